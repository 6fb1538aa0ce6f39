"""Guards and headers for everything under /api/v1, before and after DRF."""

import sys

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from core.errors import error_body
from portal.api.errors import unavailable
from portal.api.throttling import rate_limit_headers

API_PREFIX = "/api/v1/"
JOB_SUBMISSION = f"{API_PREFIX}jobs"

# Headers worth keeping when an error page is turned into the JSON error shape.
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def body_limit(method: str, path: str) -> int:
    """The largest request body under /api/v1: a job submission may carry an image."""
    if method == "POST" and path.rstrip("/") == JOB_SUBMISSION:
        return settings.JOB_SUBMIT_MAX_BODY
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def too_large(limit: int) -> JsonResponse:
    return JsonResponse(
        error_body(f"Request body is larger than {limit} bytes", "request_too_large"), status=413
    )


class ApiMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(error_body("Invalid Content-Length", "invalid_request"), status=400)
        limit = body_limit(request.method or "", request.path)
        if length > limit:
            return too_large(limit)
        response = self.get_response(request)
        if response.status_code >= 400 and response.get("Content-Type") != "application/json":
            response = self._as_json(response)
        usage = getattr(request, "rate_limit", None)
        if usage:
            for name, value in rate_limit_headers(usage).items():
                response[name] = value
        return response

    @staticmethod
    def _as_json(response: HttpResponse) -> JsonResponse:
        """Errors raised outside DRF (Django's 400/500 pages) in the API's error shape."""
        code = "server_error" if response.status_code >= 500 else "invalid_request"
        body = error_body(response.reason_phrase, code)
        json_response = JsonResponse(body, status=response.status_code)
        for name in _KEPT_HEADERS:
            if name in response:
                json_response[name] = response[name]
        return json_response


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's ``handler500``: a 503 with ``Retry-After`` when the cause is a backing
    service that is away (Postgres restarting, Redis down), in the API's error shape
    under /api/v1; Django's own 500 page otherwise."""
    away = unavailable(sys.exc_info()[1] or Exception())
    if away is None:
        return defaults.server_error(request)
    retry_after = str(away.extra["retry_after"])
    if request.path.startswith(API_PREFIX):
        response: HttpResponse = JsonResponse(
            error_body(str(away.detail), away.code, retry_after=away.extra["retry_after"]),
            status=503,
        )
    else:
        response = HttpResponse(
            "Service temporarily unavailable, please retry in a moment.",
            status=503,
            content_type="text/plain",
        )
    response["Retry-After"] = retry_after
    return response
