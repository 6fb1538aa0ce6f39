from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.selectors import balance_of
from portal import services
from portal.api import serializers as s
from portal.api.base import PublicView, paginate, validated
from portal.api.errors import ApiError
from portal.models import ApiKey

MAX_KEYS_PER_ACCOUNT = 50


class HealthView(PublicView):
    @extend_schema(summary="Server status (no authentication)", responses=s.HealthResponse)
    def get(self, request: Request) -> Response:
        return Response({"status": "ok", "version": settings.VERSION})


class AccountView(APIView):
    @extend_schema(summary="Your account and available credits", responses=s.AccountResponse)
    def get(self, request: Request) -> Response:
        user = request.user
        balance = balance_of(user=user)
        account = {
            "id": user.pk,
            "email": user.email,
            "credits": balance.available,
            "held": balance.held,
            "earnings": balance.earnings,
            "created_at": user.date_joined,
        }
        return Response({"data": s.AccountSerializer(account).data})


def _active_keys(request: Request):
    return ApiKey.objects.filter(user=request.user, revoked_at__isnull=True)


def _present_key(key: ApiKey) -> dict:
    return s.ApiKeySerializer(key).data


class ApiKeyListView(APIView):
    @extend_schema(
        summary="List your API keys",
        operation_id="api_keys_list",
        parameters=[s.ApiKeyListInput],
        responses=s.ApiKeyListResponse,
    )
    def get(self, request: Request) -> Response:
        return Response(paginate(request, _active_keys(request), _present_key, s.ApiKeyListInput))

    @extend_schema(
        summary="Create an API key (the full key is returned only here)",
        request=s.CreateApiKeyInput,
        responses={201: s.CreatedApiKeyResponse},
    )
    def post(self, request: Request) -> Response:
        data = validated(s.CreateApiKeyInput, request.data)
        if _active_keys(request).count() >= MAX_KEYS_PER_ACCOUNT:
            raise ApiError(
                f"At most {MAX_KEYS_PER_ACCOUNT} active keys per account",
                code="key_limit_reached",
                status_code=status.HTTP_409_CONFLICT,
            )
        key, raw = services.create_api_key(
            user=request.user, name=data["name"], scopes=data["scopes"]
        )
        body = {"data": _present_key(key), "key": raw}
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    @extend_schema(summary="Revoke an API key (refused from then on)", responses=s.ApiKeyResponse)
    def delete(self, request: Request, key_id: str) -> Response:
        key = get_object_or_404(_active_keys(request), pk=key_id)
        services.revoke_api_key(key=key)
        return Response({"data": _present_key(key)})


@extend_schema(exclude=True)
class NotFoundView(PublicView):
    """Any unknown path under /api/v1: a JSON 404, never an HTML page."""

    def handle(self, request: Request, *args, **kwargs) -> Response:
        raise ApiError("Not found", code="not_found", status_code=404)

    get = post = put = patch = delete = head = options = handle


class JSONErrorsMixin:
    """Errors of views that render HTML or YAML still come as JSON."""

    def handle_exception(self, exc: Exception) -> Response:
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)


class SchemaView(JSONErrorsMixin, SpectacularAPIView):
    pass


class DocsView(JSONErrorsMixin, SpectacularSwaggerView):
    pass
