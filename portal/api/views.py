from functools import cache
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.counters import redis_available
from core.errors import ApiError
from portal import audit
from portal.api import serializers as s
from portal.api.base import PublicView, SignedRequest, page_schema, paginate


class HealthView(PublicView):
    @extend_schema(summary="Server status (no authentication)", responses=s.HealthResponse)
    def get(self, request: Request) -> Response:
        if redis_available():
            return Response({"status": "ok", "version": settings.VERSION})
        # Still serving, with per-process rate limits (core.counters).
        body = {"status": "degraded", "version": settings.VERSION, "degraded": ["redis"]}
        return Response(body)


class AuditLogView(APIView):
    """The account's own audit log; with a key, the ``keys`` scope (as its keys' trail:
    both tell where the account is used from)."""

    key_scope = "keys"

    @page_schema(
        "Your account's audit log (sign-ins, keys, Islands, grants), newest first",
        s.AuditResponse,
    )
    def get(self, request: SignedRequest) -> Response:
        entries = audit.entries_of(request.user)
        return Response(paginate(request, entries, lambda e: s.AuditEntrySerializer(e).data))


@extend_schema(exclude=True)
class NotFoundView(PublicView):
    """Any unknown path under /api/v1: a JSON 404, never an HTML page."""

    def handle(self, request: Request, *args, **kwargs) -> Response:
        raise ApiError("Not found", code="not_found", status_code=404)

    get = post = put = patch = delete = head = options = handle  # type: ignore[assignment]


class JSONErrorsMixin(APIView):
    """Errors of views that render HTML or YAML still come as JSON."""

    def handle_exception(self, exc: Exception) -> Response:
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)


class SchemaView(JSONErrorsMixin, SpectacularAPIView):
    """The document, made and written once per process and format: it does not change
    while the process runs, and drf-spectacular would make and write it again for every
    request (~25 ms of CPU, which anyone may ask for)."""

    def get(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        media_type = request.accepted_renderer.media_type
        return HttpResponse(document(media_type), content_type=request.accepted_media_type)


@cache
def document(media_type: str) -> str | bytes:
    """The document in one of the view's formats (YAML or JSON)."""
    renderer = next(r for r in SchemaView.renderer_classes if r.media_type == media_type)
    schema = SchemaView.generator_class().get_schema(request=None, public=True)
    return renderer().render(schema, renderer_context={})


class DocsView(JSONErrorsMixin, SpectacularSwaggerView):
    pass
