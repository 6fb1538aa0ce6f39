from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.selectors import available_credits
from portal import services
from portal.api.base import InputSerializer, PublicView, validated
from portal.api.errors import ApiError
from portal.models import ApiKey


class HealthView(PublicView):
    throttle_classes: list = []

    @extend_schema(summary="Server status (no authentication)")
    def get(self, request: Request) -> Response:
        return Response({"status": "ok", "version": settings.VERSION})


class AccountView(APIView):
    @extend_schema(summary="Your account and available credits")
    def get(self, request: Request) -> Response:
        user = request.user
        return Response(
            {
                "data": {
                    "id": str(user.pk),
                    "email": user.email,
                    "credits": float(available_credits(user=user)),
                    "created_at": user.date_joined,
                }
            }
        )


def present_key(key: ApiKey) -> dict:
    return {
        "id": str(key.pk),
        "name": key.name,
        "prefix": key.prefix,
        "scopes": key.scopes,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "expires_at": key.expires_at,
    }


class CreateKeyInput(InputSerializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKey.SCOPES),
        min_length=1,
        required=False,
        default=list(ApiKey.SCOPES),
    )


MAX_KEYS_PER_ACCOUNT = 50


class ApiKeyListView(APIView):
    @extend_schema(summary="List your API keys")
    def get(self, request: Request) -> Response:
        keys = ApiKey.objects.filter(user=request.user, revoked_at__isnull=True)
        return Response({"data": [present_key(k) for k in keys]})

    @extend_schema(summary="Create an API key (the full key is returned once)")
    def post(self, request: Request) -> Response:
        data = validated(CreateKeyInput, request.data)
        active = ApiKey.objects.filter(user=request.user, revoked_at__isnull=True).count()
        if active >= MAX_KEYS_PER_ACCOUNT:
            raise ApiError(
                f"At most {MAX_KEYS_PER_ACCOUNT} active keys per account",
                code="key_limit_reached",
                status_code=409,
            )
        key, raw = services.create_api_key(
            user=request.user, name=data["name"], scopes=data["scopes"]
        )
        return Response({"data": present_key(key), "key": raw}, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    @extend_schema(summary="Revoke an API key")
    def delete(self, request: Request, key_id: str) -> Response:
        key = get_object_or_404(ApiKey, pk=key_id, user=request.user, revoked_at__isnull=True)
        services.revoke_api_key(key=key)
        return Response({"data": present_key(key)})


class NotFoundView(PublicView):
    """Any unknown path under /api/v1: a JSON 404, never an HTML page."""

    def dispatch(self, request, *args, **kwargs):
        return super().dispatch(request, *args, **kwargs)

    def handle(self, request: Request, *args, **kwargs) -> Response:
        raise ApiError("Not found", code="not_found", status_code=404)

    get = post = put = patch = delete = head = options = handle
