"""Guards and headers for everything under /api/v1, before and after DRF."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from portal.api.errors import error_body

API_PREFIX = "/api/v1/"


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
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            body = error_body("Request body is too large", "request_too_large")
            return JsonResponse(body, status=400)
        response = self.get_response(request)
        rate_limit = getattr(request, "rate_limit", None)
        if rate_limit:
            limit, remaining, reset = rate_limit
            response["X-RateLimit-Limit"] = str(limit)
            response["X-RateLimit-Remaining"] = str(remaining)
            response["X-RateLimit-Reset"] = str(reset)
        return response
