"""Counters shared by every process through Redis: request limits and attempt limits.

Each bucket is a counter that lives one minute from its first request, so "100 requests
per minute" means the 101st request within a minute of the first is refused. Counting
costs one round trip: an atomic script increments, starts the minute and reads what is left.
:func:`hit` counts from sync code, :func:`ahit` from an event loop (the API's fast lane,
portal.api.lane), with the same script and buckets. The API layer turns a :class:`Usage`
into its answer (portal.api.throttling).

While Redis is away, requests are not refused for it: each process counts in its own
memory (:class:`Fallback`), allowing a bucket's limit divided by ``WEB_CONCURRENCY``, and
tries Redis again after ``REDIS_RETRY_SECONDS``; ``/api/v1/health`` reports ``degraded``.
What needs Redis itself (a stream's slot, an Idempotency-Key) answers 503 meanwhile.
"""

import asyncio
import logging
import math
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

import redis
import redis.asyncio
from django.conf import settings

from core.redis import redis_client

logger = logging.getLogger(__name__)
WINDOW_SECONDS = 60
REQUESTS_HASH = "key-requests"  # key id -> requests not yet counted in the database
REDIS_RETRY_SECONDS = 1.0

# ``marker``, when given, is a key's revocation marker: checking it here lets every web
# process refuse a revoked key at once without a second round trip. ``counter`` and
# ``field``, given with it: the key's request count (portal.keys.usage), in the same trip.
_HIT_FUNCTION = """
local function hit(bucket, window, marker, counter, field)
  local count = redis.call('INCR', bucket)
  if counter then redis.call('HINCRBY', counter, field, 1) end
  local ttl = redis.call('PTTL', bucket)
  if ttl < 0 then
    redis.call('PEXPIRE', bucket, window)
    ttl = tonumber(window)
  end
  local revoked = 0
  if marker then revoked = redis.call('EXISTS', marker) end
  return count, ttl, revoked
end
"""
# A member of a set of at most ``limit`` members that expire ``ttl`` seconds after they
# were added (a sorted set scored by expiry; compute.streaming's stream slots): 1 if
# taken, 0 if the set is full.
_TAKE_FUNCTION = """
local function take(key, limit, ttl, member)
  local now = redis.call('TIME')
  local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
  redis.call('ZREMRANGEBYSCORE', key, '-inf', t)
  if redis.call('ZCARD', key) >= tonumber(limit) then return 0 end
  redis.call('ZADD', key, t + tonumber(ttl), member)
  redis.call('EXPIRE', key, math.ceil(tonumber(ttl)))
  return 1
end
"""
_HIT = _HIT_FUNCTION + "return {hit(KEYS[1], ARGV[1], KEYS[2], KEYS[3], ARGV[2])}"
_TAKE = _TAKE_FUNCTION + "return take(KEYS[1], ARGV[1], ARGV[2], ARGV[3])"
# The two in one round trip; the member is taken only by a request within its limit
# (ARGV[3]) and whose key is not revoked.
_HIT_THEN_TAKE = (
    _HIT_FUNCTION
    + _TAKE_FUNCTION
    + """
local count, ttl, revoked = hit(KEYS[1], ARGV[1], KEYS[2], KEYS[3], ARGV[2])
local taken = 0
if count <= tonumber(ARGV[3]) and revoked == 0 then
  taken = take(KEYS[4], ARGV[4], ARGV[5], ARGV[6])
end
return {count, ttl, revoked, taken}
"""
)


@cache
def _hit_script():
    return redis_client().register_script(_HIT)


@cache
def take_script():
    """:data:`_TAKE` on :func:`redis_client` (sent by its digest once Redis knows it)."""
    return redis_client().register_script(_TAKE)


@dataclass(frozen=True)
class Usage:
    limit: int
    remaining: int
    reset: int  # Unix time at which the bucket starts afresh
    retry_after: int  # seconds until then, at least 1
    allowed: bool
    revoked: bool = False
    taken: bool = False  # the member asked for with the count (:class:`Take`)


@dataclass(frozen=True)
class Take:
    """A member to add to a bounded set of expiring members with the count (see
    ``_TAKE_FUNCTION``), in the same round trip."""

    key: str
    limit: int
    ttl: float
    member: str


def revocation_marker(key_id: str) -> str:
    return f"revoked:{key_id}"


def mark_revoked(key_id: str) -> None:
    """Tell every web process that a key is revoked, for as long as a process may still
    hold it in its cache."""
    ttl = max(1, math.ceil(settings.API_KEY_CACHE_SECONDS * 2))
    redis_client().set(revocation_marker(key_id), 1, ex=ttl)


class Fallback:
    """This process's own buckets, used while Redis is away: one counter per bucket for
    the minute from its first request, as the Redis script keeps them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, int]] = {}
        self._down_until = 0.0

    def down(self) -> bool:
        """Whether Redis failed within the last ``REDIS_RETRY_SECONDS`` (not tried again
        yet: a request does not wait for a dead server's timeout)."""
        return time.monotonic() < self._down_until

    def trip(self, exc: BaseException) -> None:
        if not self.down():
            logger.warning("Redis is unavailable (%s): rate limits are per process", exc)
        self._down_until = time.monotonic() + REDIS_RETRY_SECONDS

    def hit(self, bucket: str, limit: int) -> Usage:
        share = max(1, math.ceil(limit / settings.WEB_CONCURRENCY))
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > 100_000:  # a flood of new buckets: forget the old ones
                self._buckets = {
                    k: v for k, v in self._buckets.items() if now - v[0] < WINDOW_SECONDS
                }
            start, count = self._buckets.get(bucket, (now, 0))
            if now - start >= WINDOW_SECONDS:
                start, count = now, 0
            self._buckets[bucket] = (start, count + 1)
        return _usage(share, count + 1, int((start + WINDOW_SECONDS - now) * 1000), 0)


fallback = Fallback()


def hit(bucket: str, limit: int, *, key_id: str | None = None) -> Usage:
    """Count one request against ``bucket`` (and check ``key_id``'s revocation marker)."""
    keys, args = _keys_args(bucket, key_id)
    if fallback.down():
        return fallback.hit(keys[0], limit)
    try:
        counted = _hit_script()(keys=keys, args=args)
    except redis.RedisError as exc:
        fallback.trip(exc)
        return fallback.hit(keys[0], limit)
    return _usage(limit, *counted)


def _keys_args(bucket: str, key_id: str | None) -> tuple[list[str], list]:
    """The script's keys and arguments: a key's bucket also checks its revocation marker
    and counts its request."""
    if not key_id:
        return [f"rl:{bucket}"], [WINDOW_SECONDS * 1000]
    keys = [f"rl:{bucket}", revocation_marker(key_id), REQUESTS_HASH]
    return keys, [WINDOW_SECONDS * 1000, key_id]


def redis_available() -> bool:
    """Whether Redis answers (for the health check); a failure switches to the fallback."""
    if fallback.down():
        return False
    try:
        redis_client().ping()
    except redis.RedisError as exc:
        fallback.trip(exc)
        return False
    return True


class AsyncRedis(NamedTuple):
    """An event loop's Redis client and its copies of the scripts (sent by digest)."""

    client: redis.asyncio.Redis
    hit: Any
    hit_then_take: Any
    take: Any


_async_clients: dict[asyncio.AbstractEventLoop, AsyncRedis] = {}


def async_redis() -> AsyncRedis:
    """This event loop's Redis client and scripts."""
    loop = asyncio.get_running_loop()
    found = _async_clients.get(loop)
    if found is None:
        client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        found = AsyncRedis(client, *map(client.register_script, (_HIT, _HIT_THEN_TAKE, _TAKE)))
        _async_clients.clear()  # one loop per web process; tests start others
        _async_clients[loop] = found
    return found


async def ahit(
    bucket: str, limit: int, *, key_id: str | None = None, take: Take | None = None
) -> Usage:
    """:func:`hit` on the running event loop; with ``take`` (and ``key_id``), also take
    that member when the request is within its limit (``Usage.taken``)."""
    keys, args = _keys_args(bucket, key_id)
    scripts = async_redis()
    if take is not None:
        if not key_id:
            raise ValueError("a member is taken with a key's count")
        keys.append(take.key)
        args += [limit, take.limit, take.ttl, take.member]
    if fallback.down() and take is None:
        return fallback.hit(keys[0], limit)
    try:
        script = scripts.hit if take is None else scripts.hit_then_take
        counted = await script(keys=keys, args=args)
    except redis.RedisError as exc:
        fallback.trip(exc)
        if take is not None:  # the member lives in Redis: nothing to take without it
            raise
        return fallback.hit(keys[0], limit)
    return _usage(limit, *counted)


def _usage(limit: int, count: int, ttl_ms: int, revoked: int, taken: int = 0) -> Usage:
    retry_after = max(1, math.ceil(ttl_ms / 1000))
    return Usage(
        limit=limit,
        remaining=max(0, limit - count),
        reset=math.ceil(time.time()) + retry_after,
        retry_after=retry_after,
        allowed=count <= limit,
        revoked=bool(revoked),
        taken=bool(taken),
    )
