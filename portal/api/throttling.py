"""The API's request limits (portal.api.auth checks them in its order): each request is
counted in Redis (core.counters) and its usage told in the X-RateLimit-* headers."""

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from core.counters import Usage, hit
from portal.api.auth import client_ip, enforce


def charge(request: Request, bucket: str, limit: int, *, key_id: str | None = None) -> None:
    """Count the request, remember the usage for the response headers, refuse with 429
    (or 401 when ``key_id`` was revoked in another process)."""
    usage = hit(bucket, limit, key_id=key_id)
    # Read back by ApiMiddleware to set the X-RateLimit-* headers on the response.
    getattr(request, "_request", request).rate_limit = usage  # type: ignore[union-attr]
    enforce(usage, key_id=key_id)


def rate_limit_headers(usage: Usage) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(usage.limit),
        "X-RateLimit-Remaining": str(usage.remaining),
        "X-RateLimit-Reset": str(usage.reset),
    }


class RedisRateThrottle(BaseThrottle):
    """Per key (API_RATE_LIMIT), per signed-in user, or per IP without credentials
    (API_ANON_RATE_LIMIT)."""

    def allow_request(self, request: Request, view: object) -> bool:
        key_id = getattr(request.auth, "key_id", None)  # a KeyInfo from ApiKeyAuthentication
        if key_id:
            charge(request, f"key:{key_id}", settings.API_RATE_LIMIT, key_id=key_id)
        elif request.user is not None and request.user.is_authenticated:
            charge(request, f"user:{request.user.pk}", settings.API_RATE_LIMIT)
        else:
            charge(request, f"ip:{client_ip(request)}", settings.API_ANON_RATE_LIMIT)
        return True
