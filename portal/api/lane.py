"""The API's fast lane: job submissions, chat completions and job streams sent with an
API key are served on the web process's event loop, outside Django's request cycle.

Django's cycle costs a request a thread hop, the middleware chain and DRF's request,
authentication, throttle and renderer objects: about 3 ms of CPU for ``POST /jobs`` on
the project's machine (bench/README.md), more than the job's own work. A view marked with
:func:`fast` names an async handler that does the same work from a :class:`Call`; the
lane serves the request with it when the request is the usual one:

- ``Authorization: Bearer ak_...`` (well formed), a host in ``ALLOWED_HOSTS``, no
  ``Accept`` header other than ``*/*`` or ``application/json``, no ``?format=``, and
  for a body a JSON ``Content-Type``.

Anything else (a browser session, a malformed header, an unknown path) takes the usual
path through Django, which answers it exactly as before; both paths call the same
services. What the lane does the way the usual path does: key authentication with the
same cache (portal.api.auth), the scope check, the per-key rate limit with the same Redis
buckets and its ``X-RateLimit-*`` headers, the one error shape
(portal.api.errors.exception_handler), and the headers of Django's security middleware.
Request bodies are limited before any of this (portal.api.asgi).

The database is used through core.tx (the loop's own connections on Postgres, a
thread on SQLite); everything else (Redis, NATS, the response) runs on the event loop.
"""

import asyncio
import contextlib
import functools
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from rest_framework.exceptions import APIException, PermissionDenied

from core import tx
from core.counters import Take, Usage, ahit
from portal.api import auth
from portal.api.auth import enforce
from portal.api.errors import REFUSALS, Refusal, exception_handler, unavailable
from portal.api.parsers import StrictJSONParser
from portal.api.throttling import rate_limit_headers
from portal.models import User

logger = logging.getLogger(__name__)
JSON_TYPES = (b"application/json",)
ACCEPTED = (b"*/*", b"application/json")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
Handler = Callable[["Call"], Awaitable["Reply"]]


def fast(view: Any, **handlers: Handler) -> Any:
    """Mark a Django view: the lane serves its ``METHOD=handler`` requests (see above).
    A handler's ``render_error`` attribute, if any, renders its errors (and those of the
    lane's checks) instead of :func:`error_reply`. A handler whose ``limits_itself`` is
    true calls :meth:`Call.limit` first thing, rather than the lane before calling it."""
    view.fast_lane = handlers
    return view


@dataclass
class Call:
    """A request in the lane, its API key authenticated."""

    request: ASGIRequest
    body_file: io.BytesIO  # the request's, shared with Django's request
    kwargs: dict[str, Any]
    key: auth.KeyInfo
    counted: Callable[[Usage], None]  # learns the usage of each limit (the headers)

    @property
    def user(self) -> User:
        return self.key.user

    async def limit(self, take: Take | None = None) -> Usage:
        """The key's rate limit (429 over it, 401 for a key revoked elsewhere), and with
        ``take`` that member too in the same round trip (``Usage.taken``)."""
        return await _limit(self.key, self.counted, take)

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    @property
    def body(self) -> bytes:
        return self.body_file.getvalue()  # the buffer itself, not a copy

    def json(self) -> dict:
        """The body as a JSON object, with the API parser's rules and errors. The body is
        let go once parsed: it may be an image of megabytes, and the handler needs only
        what it holds (issue 20: one copy in memory at a time)."""
        self.body_file.seek(0)
        try:
            return StrictJSONParser().parse(
                self.body_file, parser_context={"request": self.request}
            )
        finally:
            self.body_file.seek(0)
            self.body_file.truncate()


@dataclass
class Reply:
    """A JSON answer (``body``), or a stream of server-sent events (``stream``)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncIterator[bytes] | None = None


# --- who may take the lane -------------------------------------------------------------
def takes(scope: dict, view: Any) -> bool:
    """Whether the lane serves this request (the usual path serves the rest)."""
    handlers = getattr(view, "fast_lane", None)
    if not handlers or scope["method"] not in handlers or b"format=" in scope["query_string"]:
        return False
    headers = dict(scope["headers"])
    authorization = headers.get(b"authorization", b"")
    if not authorization.startswith((b"Bearer ak_", b"bearer ak_")):
        return False
    if headers.get(b"accept", b"*/*") not in ACCEPTED:
        return False
    if scope["method"] == "POST":
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        return kind in JSON_TYPES
    return True


async def serve(
    scope: dict, body_file: io.BytesIO, receive: Any, send: Any, view: Any, kwargs: dict
) -> bool:
    """Serve the request; ``False`` (nothing sent) when it must take the usual path."""
    request = ASGIRequest(scope, body_file)
    try:
        request.get_host()
    except DisallowedHost:
        return False
    counted: list[Usage] = []
    handler = view.fast_lane[scope["method"]]
    render_error = getattr(handler, "render_error", error_reply)
    try:
        limited = getattr(handler, "limits_itself", False)
        key = await _authenticate(request, counted.append, limit=not limited)
        reply = await handler(Call(request, body_file, kwargs, key, counted.append))
    except REFUSALS as exc:
        reply = render_error(exc)
    except Exception as exc:
        if (away := unavailable(exc)) is None:
            logger.exception("fast lane failed on %s %s", scope["method"], scope["path"])
        reply = render_error(away or APIException())
    if counted:
        reply.headers = {**rate_limit_headers(counted[-1]), **reply.headers}
    await _respond(reply, request, receive, send)
    return True


async def _authenticate(
    request: ASGIRequest, counted: Callable[[Usage], None], *, limit: bool = True
) -> auth.KeyInfo:
    """The usual path's authentication, scope check and (``limit``) rate limit, in its
    order; ``counted`` learns each limit's usage (the answer's headers tell the last)."""
    raw = auth.bearer_key(request.headers["Authorization"])
    key_hash = auth.hash_key(raw)
    found, info = auth.cached_key(key_hash)
    ip = request.META.get("REMOTE_ADDR") or ""
    if not found:
        if tx.async_available():
            async with tx.async_tx() as db:
                info = await auth.aload_key(db, key_hash, ip, counted)
        else:
            info = await tx.in_thread(auth.load_key, key_hash, ip, counted)
    key = auth.usable(info, ip)
    if auth.touch_due(key):
        await tx.work(lambda db: db.one(auth.touching(key)))
    if not auth.has_scope(key, request.method or "GET"):
        raise PermissionDenied(auth.HasScope.message)
    if limit:
        await _limit(key, counted)
    return key


async def _limit(
    key: auth.KeyInfo, counted: Callable[[Usage], None], take: Take | None = None
) -> Usage:
    usage = await ahit(f"key:{key.key_id}", settings.API_RATE_LIMIT, key_id=key.key_id, take=take)
    counted(usage)
    enforce(usage, key_id=key.key_id)
    return usage


def error_reply(exc: Refusal) -> Reply:
    """``exc`` in the API's one error shape, with its headers."""
    answer = exception_handler(exc, {})
    headers = {name: value for name, value in answer.items() if name.lower() != "content-type"}
    return Reply(status=answer.status_code, body=answer.data, headers=headers)


# --- the answer ----------------------------------------------------------------------------
@functools.cache
def _security_headers(secure: bool) -> tuple[tuple[bytes, bytes], ...]:
    """What Django's security and clickjacking middleware add to an answer."""

    class Probe:
        def is_secure(self) -> bool:
            return secure

    response = HttpResponse()
    del response["Content-Type"]
    SecurityMiddleware(lambda r: response).process_response(Probe(), response)  # type: ignore[arg-type]
    XFrameOptionsMiddleware(lambda r: response).process_response(Probe(), response)  # type: ignore[arg-type]
    return tuple((k.lower().encode(), v.encode()) for k, v in response.items())


async def _respond(reply: Reply, request: ASGIRequest, receive: Any, send: Any) -> None:
    headers = [*_security_headers(request.is_secure())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in reply.headers.items()]
    if reply.stream is None:
        body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
        reply.body = None  # a job's answer holds its input (an image?): only ``body`` now
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    headers += [(b"content-type", b"text/event-stream")]
    headers += [(k.lower().encode(), v.encode()) for k, v in SSE_HEADERS.items()]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await _stream(reply.stream, receive, send)


async def _stream(chunks: AsyncIterator[bytes], receive: Any, send: Any) -> None:
    """Send the events until they end or the client goes away; then the iterator is
    closed at once, so that its ``finally`` blocks (slots, subscriptions) run."""

    async def pump() -> None:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    sending, listening = asyncio.create_task(pump()), asyncio.create_task(gone())
    try:
        await asyncio.wait([sending, listening], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (listening, sending):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listening
        try:
            await sending
        except (asyncio.CancelledError, OSError):
            pass
        except Exception:
            logger.exception("a stream failed after its answer started")
        close = getattr(chunks, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
