"""ASGI pieces: the guards for request bodies under /api/v1 and for queries of too many
fields, and the pump of a streamed answer (:func:`until_gone`).

Django's ASGI handler reads a whole body (to disk past a few MiB) before any middleware
runs, and DRF ignores a body without a Content-Length. The body guard refuses a declared
length over the limit before reading anything, reads the body up to the limit itself,
then hands it on in one message with its Content-Length.
"""

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Awaitable

from django.conf import settings

from core.errors import error_body
from portal.api.middleware import API_PREFIX, body_limit

logger = logging.getLogger(__name__)


async def until_gone(sending: Awaitable[None], receive) -> None:
    """Send a streamed answer (``sending``) until it ends or the client goes away, then
    cancel the other at once: a body's iterator cancelled mid-way runs its ``finally``
    blocks (slots, subscriptions) now. The one pump of the fast lane's streams and of
    Django's streamed responses (config.asgi)."""

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pumping, listening = asyncio.ensure_future(sending), asyncio.ensure_future(gone())
    try:
        await asyncio.wait([pumping, listening], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (listening, pumping):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listening
        try:
            await pumping
        except (asyncio.CancelledError, OSError):
            pass
        except Exception:
            logger.exception("a stream failed after its answer started")


async def _refuse(send, message: str, code: str, status: int = 400, *, page: bool = False) -> None:
    kind = b"text/plain; charset=utf-8" if page else b"application/json"
    body = message.encode() if page else json.dumps(error_body(message, code)).encode()
    headers = [(b"content-type", kind), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def limit_query(app):
    """A query of more than DATA_UPLOAD_MAX_NUMBER_FIELDS fields is a 400 on every route
    (``too_many_fields`` in the API's error shape under /api/v1), as Django would refuse
    it, but before any view: a route that never reads its query answers the same, and
    none answers a server error."""
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS

    async def guard(scope, receive, send):
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if limit is None or not query or query.count(b"&") < limit:
            return await app(scope, receive, send)
        message = f"A query may have at most {limit} parameters"
        page = not scope["path"].startswith(API_PREFIX)
        return await _refuse(send, message, "too_many_fields", page=page)

    return guard


def limit_api_body(app):
    """Read the body of every request under /api/v1 here, into one buffer, and hand it on
    in one message (with its Content-Length): a 413 for a declared length over the
    route's limit before anything is read, and as soon as more than the limit arrives
    (the rest is never read). Django would spool a body past a few MiB to disk and read
    it back whole; the Handler (config.asgi) wraps this one message without a copy."""

    async def guard(scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            return await app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if (
            declared is None
            and b"transfer-encoding" not in headers
            and scope.get("http_version", "1.1") in ("1.0", "1.1")
        ):
            return await app(scope, receive, send)  # HTTP/1 without either header: no body
        limit = body_limit(scope.get("method", ""), scope["path"])
        if declared is not None and not declared.isdigit():
            return await _refuse(send, "Invalid Content-Length", "invalid_request")
        if declared is not None and int(declared) > limit:
            return await _too_large(send, limit)
        body = await _read(receive, limit)
        if body is None:
            return None  # the client went away
        if len(body) > limit:
            return await _too_large(send, limit)
        if declared is None and body:
            length = b"%d" % len(body)
            scope = {**scope, "headers": [*scope["headers"], (b"content-length", length)]}
        whole = [{"type": "http.request", "body": body, "more_body": False}]
        del body

        async def replay():
            return whole.pop() if whole else await receive()

        return await app(scope, replay, send)

    return guard


async def _read(receive, limit: int) -> bytes | None:
    """The body, or its first bytes past ``limit``; None when the client went away. A
    body in parts is written into one buffer as they arrive, each let go at once: the
    parts and the whole never coexist (issue 20: one copy of a job's image), and the
    buffer's bytes are handed on without a copy (``getvalue`` shares them)."""
    buffer = io.BytesIO()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        more = message.get("more_body", False)
        if not more and not buffer.tell():
            return message.get("body", b"")  # in one message: as it is
        buffer.write(message.get("body", b""))
        if not more or buffer.tell() > limit:
            return buffer.getvalue()


async def _too_large(send, limit: int) -> None:
    await _refuse(send, f"Request body is larger than {limit} bytes", "request_too_large", 413)
