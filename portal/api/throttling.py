"""The API's request limits: each request is counted in Redis (core.counters) by the
door (portal.api.auth.identify), in its order, and its usage told in the X-RateLimit-*
headers."""

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from core.counters import Usage
from core.tx import run_sync
from portal.api.auth import asking, count_in, drf_io, identify


def charge(request: Request, bucket: str, limit: int) -> None:
    """Count the request against another limit of its own (the usage goes to the
    response headers), refuse with 429."""
    run_sync(count_in(drf_io(request), bucket, limit))


def rate_limit_headers(usage: Usage) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(usage.limit),
        "X-RateLimit-Remaining": str(usage.remaining),
        "X-RateLimit-Reset": str(usage.reset),
    }


class RedisRateThrottle(BaseThrottle):
    """A public view's request (no authentication), per IP (API_ANON_RATE_LIMIT), through
    the door; any other was counted by the door in DRF's authentication step
    (portal.api.auth.ApiKeyAuthentication)."""

    def allow_request(self, request: Request, view: object) -> bool:
        if request.successful_authenticator is None:
            run_sync(identify(asking(request, "public"), drf_io(request)))
        return True
