"""Per-key request limits shared by every web process through Redis (fixed one-minute
windows: one INCR round trip per request)."""

import time
from functools import cache

import redis
from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from portal.api.auth import KeyInfo

WINDOW_SECONDS = 60


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def client_ip(request: Request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


class RedisRateThrottle(BaseThrottle):
    def _identity(self, request: Request) -> tuple[str, int]:
        if isinstance(request.auth, KeyInfo):
            return f"key:{request.auth.key_id}", settings.API_RATE_LIMIT
        if request.user is not None and request.user.is_authenticated:
            return f"user:{request.user.pk}", settings.API_RATE_LIMIT
        return f"ip:{client_ip(request)}", settings.API_ANON_RATE_LIMIT

    def allow_request(self, request: Request, view: object) -> bool:
        ident, limit = self._identity(request)
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        name = f"rl:{ident}:{window}"
        pipe = redis_client().pipeline(transaction=False)
        pipe.incr(name)
        pipe.expire(name, WINDOW_SECONDS + 1)
        count = pipe.execute()[0]
        reset = (window + 1) * WINDOW_SECONDS
        self.retry_after = max(1, int(reset - now + 0.999))
        # Read back by ApiMiddleware to set the X-RateLimit-* headers on every response.
        request._request.rate_limit = (limit, max(0, limit - count), reset)
        return count <= limit

    def wait(self) -> float:
        return self.retry_after
