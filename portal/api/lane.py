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
services. What the lane does the way the usual path does: the API's one door
(portal.api.auth.identify: the key, its scope, its rate limit and the ``X-RateLimit-*``
headers), the one error renderer (portal.api.errors.refusal), and the headers of
Django's security middleware.
Request bodies are limited before any of this (portal.api.asgi).

The database is used through core.tx (the loop's own connections on Postgres, a
thread on SQLite); everything else (Redis, NATS, the response) runs on the event loop.
"""

import contextlib
import functools
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from rest_framework.exceptions import APIException

from core.counters import Take, Usage
from portal.api import auth
from portal.api.asgi import until_gone
from portal.api.errors import REFUSALS, refusal, unavailable
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
    A handler whose ``openai`` attribute is true has its errors (and those of the lane's
    checks) rendered with OpenAI's error type. A handler whose ``limits_itself`` is true
    calls :meth:`Call.limit` first thing, rather than the lane before calling it."""
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
        who, io = auth.Who(self.user, self.key), auth.AsyncIo(self.counted)
        return await auth.count(who, _asking(self.request), io, take)

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


def _asking(request: ASGIRequest) -> auth.Asking:
    """The request as the door sees it: a key only (a session takes the usual path), for
    a handler of its method that names no key scope."""
    return auth.Asking(
        authorization=request.headers["Authorization"],
        ip=auth.client_ip(request),
        method=request.method or "GET",
    )


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
    openai = getattr(handler, "openai", False)
    try:
        limited = getattr(handler, "limits_itself", False)
        who = await auth.identify(_asking(request), auth.AsyncIo(counted.append), limit=not limited)
        assert who.key is not None
        reply = await handler(Call(request, body_file, kwargs, who.key, counted.append))
    except REFUSALS as exc:
        reply = error_reply(exc, openai=openai)
    except Exception as exc:
        if (away := unavailable(exc)) is None:
            logger.exception("fast lane failed on %s %s", scope["method"], scope["path"])
        reply = error_reply(away or APIException(), openai=openai)
    if counted:
        reply.headers = {**rate_limit_headers(counted[-1]), **reply.headers}
    await _respond(reply, request, receive, send)
    return True


def error_reply(exc: BaseException, *, openai: bool = False) -> Reply:
    """:func:`~portal.api.errors.refusal` in the lane."""
    refused = refusal(exc, openai=openai)
    return Reply(status=refused.status, body=refused.body, headers=refused.headers)


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

    try:
        await until_gone(pump(), receive)
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
