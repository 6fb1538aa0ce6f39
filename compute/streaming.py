"""``GET /api/v1/jobs/:id/stream``: a job's events as Server-Sent Events, and what the
chat completions endpoint shares with it (the events themselves: compute.feed).

- Quota: ``STREAM_CONCURRENT_LIMIT`` open streams per account (:class:`StreamSlots`).
- Two ways, one door: an API key takes the fast lane (portal.api.lane); a browser
  session takes Django's path, where DRF does not run async views: :func:`authorize`
  takes the request through the API's door (in a thread), and the one error renderer
  (portal.api.errors) answers its refusals.
"""

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis.asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.request import Request

from compute.feed import job_events
from compute.models import Job
from compute.selectors.jobs import job_of
from core import tx
from core.counters import Take, Usage, async_redis, take_script
from core.errors import ApiError
from core.redis import redis_client
from portal.api.auth import ApiKeyAuthentication
from portal.api.errors import REFUSALS, UNAVAILABLE_ERRORS, json_response
from portal.api.lane import SSE_HEADERS, Call, Reply
from portal.api.parsers import StrictJSONParser

logger = logging.getLogger(__name__)

KEEP_ALIVE = b": keep-alive\n\n"


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


# --- the API's door, for async views ---------------------------------------------------
def authorize(request: HttpRequest, method: str) -> Request:
    """The request through the API's one door (portal.api.auth.identify: bearer key or
    portal session with CSRF, the key's scope, the rate limit), as every DRF view of the
    API: its DRF request, whose ``data`` the view reads."""
    if request.method != method:
        raise MethodNotAllowed(request.method or "")
    drf = Request(request, parsers=[StrictJSONParser()], authenticators=[ApiKeyAuthentication()])
    drf.user  # noqa: B018  # the door (DRF's authentication step)
    return drf


# --- the stream quota ------------------------------------------------------------------
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
    NAME = "streams"  # of the Redis keys and the refusal's message

    @staticmethod
    def limit() -> int:
        return settings.STREAM_CONCURRENT_LIMIT

    def key(self, user_id: object) -> str:
        return f"{self.NAME}:{user_id}"

    def take(self, user_id: object) -> Take:
        """A new slot, to take with the request's rate limit (portal.api.lane's
        ``Call.limit``) or with :meth:`acquire`."""
        return Take(self.key(user_id), self.limit(), self.TTL, uuid.uuid4().hex)

    def acquire(self, user_id: object) -> str:
        """Take a slot (sync: called with the request's other checks); 429 when full."""
        slot = self.take(user_id)
        taken = take_script()(keys=[slot.key], args=[slot.limit, slot.ttl, slot.member])
        return self._taken(taken, slot.member)

    async def aacquire(self, user_id: object) -> str:
        """:meth:`acquire` on the event loop."""
        slot = self.take(user_id)
        taken = await async_redis().take(keys=[slot.key], args=[slot.limit, slot.ttl, slot.member])
        return self._taken(taken, slot.member)

    async def kept(self, user_id: object, usage: Usage, slot: Take | None) -> str:
        """The slot asked for with the rate limit (``usage``), or one taken now if none
        was asked for; 429 when the account's streams are all open."""
        if slot is None:
            return await self.aacquire(user_id)
        return self._taken(usage.taken, slot.member)

    def _taken(self, taken: object, slot: str) -> str:
        if not taken:
            limit = self.limit()
            raise ApiError(
                f"At most {limit} {self.NAME} may be open at once per account",
                code="concurrent_stream_limit",
                status_code=429,
                limit=limit,
                retry_after=1,
            )
        return slot

    def release_sync(self, user_id: object, slot: str) -> None:
        redis_client().zrem(self.key(user_id), slot)

    async def renew(self, user_id: object, slot: str) -> None:
        try:
            await async_redis().client.eval(_REFRESH, 1, self.key(user_id), self.TTL, slot)
        except redis.RedisError:
            logger.warning("could not renew stream slot of user %s", user_id)

    async def release(self, user_id: object, slot: str) -> None:
        try:
            await async_redis().client.zrem(self.key(user_id), slot)
        except redis.RedisError:
            logger.warning("could not release stream slot of user %s (it expires)", user_id)


slots = StreamSlots()


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


def _own_job(user: Any, job_id: uuid.UUID) -> Job:
    job = job_of(user, job_id)
    if job is None:
        raise ApiError("Job not found", code="not_found", status_code=404)
    return job


def _open_stream(request: HttpRequest, job_id: uuid.UUID) -> tuple[Job, object, str]:
    drf = authorize(request, "GET")
    job = _own_job(drf.user, job_id)
    return job, drf.user.pk, slots.acquire(drf.user.pk)


@csrf_exempt  # a session POST is CSRF-checked by the API's session authentication
async def job_stream(request: HttpRequest, job_id: uuid.UUID) -> HttpResponseBase:
    """The job's events as ``text/event-stream``: ``event: <type>`` and ``data`` JSON
    that carries ``"type"`` too; ends after ``done`` or ``error``."""
    try:
        job, user_id, slot = await db(_open_stream, request, job_id)
    except (*REFUSALS, *UNAVAILABLE_ERRORS) as exc:
        return json_response(exc)
    return sse_response(held(user_id, slot, _job_sse(job)))


async def job_stream_fast(call: Call) -> Reply:
    """:func:`job_stream` in the API's fast lane."""
    job = await tx.in_thread(_own_job, call.user, call.kwargs["job_id"])
    slot = await slots.aacquire(call.user.pk)
    return Reply(stream=held(call.user.pk, slot, _job_sse(job)))
