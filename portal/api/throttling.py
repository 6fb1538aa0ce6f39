"""Request limits shared by every web process through Redis.

Each bucket is a counter that lives one minute from its first request, so "100 requests
per minute" means the 101st request within a minute of the first is refused. Counting
costs one round trip: an atomic script increments, starts the minute and reads what is left.
"""

import math
import time
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from portal.api.errors import ApiError

WINDOW_SECONDS = 60

_HIT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


@cache
def _hit_script():
    return redis_client().register_script(_HIT)


@dataclass(frozen=True)
class Usage:
    limit: int
    remaining: int
    reset: int  # Unix time at which the bucket starts afresh
    retry_after: int  # seconds until then, at least 1
    allowed: bool


def hit(bucket: str, limit: int) -> Usage:
    """Count one request against ``bucket``."""
    try:
        count, ttl_ms = _hit_script()(keys=[f"rl:{bucket}"], args=[WINDOW_SECONDS * 1000])
    except redis.RedisError as exc:
        raise ApiError(
            "Service temporarily unavailable", code="unavailable", status_code=503
        ) from exc
    retry_after = max(1, math.ceil(ttl_ms / 1000))
    return Usage(
        limit=limit,
        remaining=max(0, limit - count),
        reset=math.ceil(time.time()) + retry_after,
        retry_after=retry_after,
        allowed=count <= limit,
    )


def client_ip(request: Request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def charge(request: Request, bucket: str, limit: int) -> None:
    """Count the request, remember the usage for the response headers, refuse with 429."""
    usage = hit(bucket, limit)
    # Read back by ApiMiddleware to set the X-RateLimit-* headers on the response.
    getattr(request, "_request", request).rate_limit = usage
    if not usage.allowed:
        raise Throttled(wait=usage.retry_after)


class RedisRateThrottle(BaseThrottle):
    """Per key (API_RATE_LIMIT), per signed-in user, or per IP without credentials
    (API_ANON_RATE_LIMIT)."""

    def allow_request(self, request: Request, view: object) -> bool:
        key_id = getattr(request.auth, "key_id", None)  # a KeyInfo from ApiKeyAuthentication
        if key_id:
            charge(request, f"key:{key_id}", settings.API_RATE_LIMIT)
        elif request.user is not None and request.user.is_authenticated:
            charge(request, f"user:{request.user.pk}", settings.API_RATE_LIMIT)
        else:
            charge(request, f"ip:{client_ip(request)}", settings.API_ANON_RATE_LIMIT)
        return True
