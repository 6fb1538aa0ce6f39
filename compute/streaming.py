"""``GET /api/v1/jobs/:id/stream``: a job's events as Server-Sent Events, and what the
chat completions endpoint shares with it.

- One NATS connection per web process, on the server's event loop (:func:`connection`).
- :func:`job_events` reads ``jobs.{id}.events`` of the ``JOB_UPDATES`` stream through a
  JetStream ordered consumer delivering everything from the stream's start: a client that
  attaches late gets what was already produced, then live events, with no gap (the
  stream holds the past, the same consumer then pushes the present) and no duplicate (one
  consumer, in stream order; :class:`Relay` drops a token seen twice). A finished job
  whose events have left the stream is replayed from its row: the whole output as one
  token, then ``done`` or ``error``.
- Quota: ``STREAM_CONCURRENT_LIMIT`` open streams per account (:class:`StreamSlots`).
- DRF does not run async views; :func:`authorize` runs the API's own authentication,
  scope and rate-limit classes on the request (in a thread), and :func:`error_response`
  answers in the API's error shape.
"""

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import orjson
import redis.asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from nats.aio.client import Client
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from rest_framework.exceptions import APIException, MethodNotAllowed, PermissionDenied
from rest_framework.request import Request

from compute.models import Job
from compute.selectors.jobs import job_of
from compute.services.jobs import usage_of
from compute.services.publish import job_events_subject
from portal.api.auth import ApiKeyAuthentication, HasScope, PortalSessionAuthentication
from portal.api.errors import ApiError, exception_handler
from portal.api.parsers import StrictJSONParser
from portal.api.throttling import RedisRateThrottle, redis_client
from sail.streams import JOB_UPDATES, JOB_UPDATES_STREAM

logger = logging.getLogger(__name__)

KINDS = frozenset({"token", "progress", "status", "image", "done", "error"})
TERMINAL = frozenset({"done", "error"})
KEEP_ALIVE = b": keep-alive\n\n"
# A finished job's events are read back from the stream within this time, or replayed
# from its row.
STORED_READ_SECONDS = 5.0
# Once a stream is flowing, events are gathered this long before a write.
LINGER_SECONDS = 0.002
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# --- one NATS connection per web process ---------------------------------------------
class _Connection:
    def __init__(self) -> None:
        self.nc: Client | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock: asyncio.Lock | None = None

    async def get(self) -> Client:
        loop = asyncio.get_running_loop()
        if self.nc is not None and self.loop is loop and not self.nc.is_closed:
            return self.nc
        if self.loop is not loop or self.lock is None:
            # A connection belongs to the loop that made it (tests run several loops).
            self.loop, self.lock, self.nc = loop, asyncio.Lock(), None
        async with self.lock:
            if self.nc is None or self.nc.is_closed:
                self.nc = await nats.connect(
                    settings.NATS_URL,
                    name=f"coordinator-web-{os.getpid()}",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                )
        return self.nc


connection = _Connection().get


async def db(function: Any, *args: Any) -> Any:
    """Run blocking ORM code in the request's thread, then give its database connection
    back (closed, or returned to the pool when one is configured): a stream lasts minutes
    and must not hold a connection all that time, and under ASGI each request has its own
    thread, so a persistent connection of that thread is never used again anyway."""

    def run() -> Any:
        try:
            return function(*args)
        finally:
            connections.close_all()

    return await sync_to_async(run)()


# --- the API's checks, for async views -------------------------------------------------
class _Handlers:
    """Stands in for a DRF view in the permission check (which looks up the handler)."""

    def get(self) -> None: ...

    def post(self) -> None: ...


def authorize(request: HttpRequest, method: str) -> Request:
    """Authenticate (bearer key or portal session with CSRF), check the key's scope and
    count the request against the rate limit, as every DRF view of the API does."""
    if request.method != method:
        raise MethodNotAllowed(request.method or "")
    drf = Request(
        request,
        parsers=[StrictJSONParser()],
        authenticators=[ApiKeyAuthentication(), PortalSessionAuthentication()],
    )
    handlers = _Handlers()
    if not HasScope().has_permission(drf, handlers):
        raise PermissionDenied(HasScope.message)
    RedisRateThrottle().allow_request(drf, handlers)
    return drf


def error_response(exc: APIException, *, allow: str = "GET", **extra: Any) -> JsonResponse:
    """``exc`` in the API's error shape, with its headers (Retry-After, WWW-Authenticate);
    ``extra`` fields join the error object."""
    answer = exception_handler(exc, {})
    body = answer.data
    if extra:
        body = {"error": {**body["error"], **extra}}
    response = JsonResponse(body, status=answer.status_code)
    for name, value in answer.items():
        if name.lower() != "content-type":
            response[name] = value
    if isinstance(exc, MethodNotAllowed):
        response["Allow"] = allow
    return response


# --- the stream quota ------------------------------------------------------------------
_ACQUIRE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], t + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])))
return 1
"""
_REFRESH = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZADD', KEYS[1], 'XX', t + tonumber(ARGV[1]), ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])))
return 1
"""


class StreamSlots:
    """At most ``STREAM_CONCURRENT_LIMIT`` open streams per account, across processes.

    Each open stream holds a member of the account's sorted set in Redis, scored with its
    expiry; the stream renews it while it runs and removes it when it ends (the client
    went away included). A process that dies leaves members that expire after
    ``TTL`` seconds, so the quota never leaks for good.
    """

    TTL = 60.0
    RENEW_EVERY = 15.0

    def __init__(self) -> None:
        self._clients: dict[asyncio.AbstractEventLoop, redis.asyncio.Redis] = {}

    @staticmethod
    def key(user_id: object) -> str:
        return f"streams:{user_id}"

    def acquire(self, user_id: object) -> str:
        """Take a slot (sync: called with the request's other checks); 429 when full."""
        limit = settings.STREAM_CONCURRENT_LIMIT
        slot = uuid.uuid4().hex
        taken = redis_client().eval(_ACQUIRE, 1, self.key(user_id), limit, self.TTL, slot)
        if not taken:
            raise ApiError(
                f"At most {limit} streams may be open at once per account",
                code="concurrent_stream_limit",
                status_code=429,
                limit=limit,
                retry_after=1,
            )
        return slot

    def release_sync(self, user_id: object, slot: str) -> None:
        redis_client().zrem(self.key(user_id), slot)

    def _async_client(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
            self._clients = {loop: client}  # one loop per web process; tests start others
        return client

    async def renew(self, user_id: object, slot: str) -> None:
        try:
            await self._async_client().eval(_REFRESH, 1, self.key(user_id), self.TTL, slot)
        except redis.RedisError:
            logger.warning("could not renew stream slot of user %s", user_id)

    async def release(self, user_id: object, slot: str) -> None:
        try:
            await self._async_client().zrem(self.key(user_id), slot)
        except redis.RedisError:
            logger.warning("could not release stream slot of user %s (it expires)", user_id)


slots = StreamSlots()


# --- reading a job's events -------------------------------------------------------------
class Relay:
    """What of a job's events goes to the client, once each.

    Tokens carry ``seq`` (1, 2, ... per attempt): one not above the last seen is a
    duplicate. A job requeued to another Island (``status`` ``queued``) starts a new
    attempt whose output starts again; the client already has the text up to ``sent``
    characters, so only what goes beyond it is passed on.
    """

    def __init__(self, job_id: object) -> None:
        self.job_id = str(job_id)
        self.sent = 0  # characters of output passed on
        self.attempt_chars = 0  # characters of output of the current attempt seen
        self.last_seq = 0
        self.images = 0
        self.ended = False

    def accept(self, event: Any) -> dict | None:
        kind = event.get("type") if isinstance(event, dict) else None
        if kind not in KINDS or self.ended:
            return None
        if kind == "token":
            return self._token(event)
        if kind == "status" and event.get("state") == "queued":
            self.last_seq, self.attempt_chars = 0, 0
        elif kind == "image":
            self.images += 1
        elif kind in TERMINAL:
            self.ended = True
        return event

    def _token(self, event: dict) -> dict | None:
        seq = event.get("seq")
        if isinstance(seq, int):
            if seq <= self.last_seq:
                return None
            self.last_seq = seq
        text = event.get("content")
        text = text if isinstance(text, str) else ""
        start = self.attempt_chars
        self.attempt_chars += len(text)
        if self.attempt_chars <= self.sent:
            return None
        if start < self.sent:
            event = {**event, "content": text[self.sent - start :]}
        self.sent = self.attempt_chars
        return event

    def finish_from(self, job: Job) -> list[dict]:
        """The rest of a finished ``job`` from its row: images and output not yet passed
        on, then ``status`` and ``done`` or ``error``."""
        events: list[dict] = [
            {"type": "image", "job_id": self.job_id, **image} for image in job.images[self.images :]
        ]
        rest = job.output[self.sent :]
        if rest:
            events.append({"type": "token", "job_id": self.job_id, "content": rest})
        events.append({"type": "status", "job_id": self.job_id, "state": job.status})
        if job.status == Job.Status.COMPLETED:
            usage = {k: v for k, v in usage_of(job).items() if k != "credits_used"}
            events.append({"type": "done", "job_id": self.job_id, "usage": usage})
        else:
            events.append(
                {"type": "error", "job_id": self.job_id, "error": job.error or job.status}
            )
        self.sent, self.images, self.ended = len(job.output), len(job.images), True
        return events


class _Inbox:
    """Messages pushed by the consumer, taken in batches (one write per batch)."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.ready = asyncio.Event()

    async def put(self, msg: Any) -> None:
        self.items.append(msg.data)
        self.ready.set()

    async def take(self, wait: float, linger: float = 0.0) -> list[bytes]:
        """What arrived, waiting up to ``wait`` for something; then ``linger`` more
        seconds for what follows it, so that a fast stream is written in fewer, larger
        chunks (one write per token costs more than relaying the token)."""
        if not self.items:
            try:
                await asyncio.wait_for(self.ready.wait(), wait)
            except TimeoutError:
                return []
        if linger:
            await asyncio.sleep(linger)
        items, self.items = self.items, []
        self.ready.clear()
        return items


async def _subscribe(job_id: object, inbox: _Inbox) -> Any:
    nc = await connection()
    js = nc.jetstream()
    subject = job_events_subject(job_id)
    kwargs = {"cb": inbox.put, "ordered_consumer": True, "deliver_policy": DeliverPolicy.ALL}
    try:
        return await js.subscribe(subject, stream=JOB_UPDATES_STREAM, **kwargs)
    except NotFoundError:  # no job event was ever published on this server
        try:
            await js.add_stream(JOB_UPDATES)
        except Exception:
            await js.stream_info(JOB_UPDATES_STREAM)  # created in between by another process
        return await js.subscribe(subject, stream=JOB_UPDATES_STREAM, **kwargs)


async def _has_stored_events(job_id: object) -> bool:
    js = (await connection()).jetstream()
    try:
        await js.get_last_msg(JOB_UPDATES_STREAM, job_events_subject(job_id))
    except NotFoundError:
        return False
    return True


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        logger.warning("skipping an event that is not JSON")
        return None


def _job_row(job_id: object) -> Job | None:
    return Job.objects.filter(pk=job_id).first()


async def _replay_finished(job: Job) -> list[dict]:
    """A finished job's events: from the stream while it holds them all (its tokens add
    up to the stored output), from the row otherwise."""
    if await _has_stored_events(job.pk):
        relay, inbox, events = Relay(job.pk), _Inbox(), []
        sub = await _subscribe(job.pk, inbox)
        deadline = time.monotonic() + STORED_READ_SECONDS
        try:
            while not relay.ended and (left := deadline - time.monotonic()) > 0:
                for raw in await inbox.take(left):
                    if (event := relay.accept(_decode(raw))) is not None:
                        events.append(event)
        finally:
            await sub.unsubscribe()
        tokens = "".join(e["content"] for e in events if e["type"] == "token")
        if relay.ended and tokens == job.output:
            return events
    return Relay(job.pk).finish_from(job)


async def job_events(job: Job, *, heartbeat: float | None = None) -> AsyncIterator[list[dict]]:
    """Batches of ``job``'s events for clients, in order, ending with ``done`` or
    ``error``; an empty batch after ``heartbeat`` seconds without events.

    Were the last events never published (a crashed publisher), a heartbeat that finds
    the job finished in the database twice in a row ends the stream from its row.
    """
    heartbeat = settings.SSE_HEARTBEAT_SECONDS if heartbeat is None else heartbeat
    if job.status in Job.FINAL:
        yield await _replay_finished(job)
        return
    relay, inbox = Relay(job.pk), _Inbox()
    sub = await _subscribe(job.pk, inbox)
    found_final = 0
    try:
        while not relay.ended:
            # The first token goes out at once; later ones may wait a moment for company.
            raws = await inbox.take(heartbeat, LINGER_SECONDS if relay.sent else 0.0)
            if raws:
                found_final = 0
                batch = [e for raw in raws if (e := relay.accept(_decode(raw))) is not None]
                if batch:
                    yield batch
                continue
            yield []
            row = await db(_job_row, job.pk)
            found_final = found_final + 1 if row is None or row.status in Job.FINAL else 0
            if found_final >= 2:
                yield relay.finish_from(row) if row else []
                return
    finally:
        await sub.unsubscribe()


# --- GET /jobs/:id/stream -----------------------------------------------------------------
def sse(event: dict) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event["type"].encode(), orjson.dumps(event))


def sse_response(content: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    for name, value in SSE_HEADERS.items():
        response[name] = value
    return response


async def held(user_id: object, slot: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Pass ``chunks`` on while holding a stream slot: renewed as it runs, released
    when the stream ends or the client goes away."""
    renewed = time.monotonic()
    try:
        async for chunk in chunks:
            yield chunk
            if time.monotonic() - renewed > slots.RENEW_EVERY:
                renewed = time.monotonic()
                await slots.renew(user_id, slot)
    finally:
        await slots.release(user_id, slot)


async def _job_sse(job: Job) -> AsyncIterator[bytes]:
    async for batch in job_events(job):
        yield b"".join(sse(event) for event in batch) if batch else KEEP_ALIVE


def _open_stream(request: HttpRequest, job_id: uuid.UUID) -> tuple[Job, object, str]:
    drf = authorize(request, "GET")
    job = job_of(drf.user, job_id)
    if job is None:
        raise ApiError("Job not found", code="not_found", status_code=404)
    return job, drf.user.pk, slots.acquire(drf.user.pk)


@csrf_exempt  # a session POST is CSRF-checked by the API's session authentication
async def job_stream(request: HttpRequest, job_id: uuid.UUID) -> HttpResponseBase:
    """The job's events as ``text/event-stream``: ``event: <type>`` and ``data`` JSON
    that carries ``"type"`` too; ends after ``done`` or ``error``."""
    try:
        job, user_id, slot = await db(_open_stream, request, job_id)
    except APIException as exc:
        return error_response(exc)
    return sse_response(held(user_id, slot, _job_sse(job)))
