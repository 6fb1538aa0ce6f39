"""``/api/v1/api-keys``: list, create, edit, revoke keys, their usage and audit trail.

Every endpoint here needs the ``keys`` scope when called with a key (besides ``read`` or
``write``); the rules of what a key may make or change: portal.keys.services."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApiError
from portal.api import key_serializers as s
from portal.api.base import SignedRequest, page_schema, paginate, validated
from portal.api.serializers import PageMeta, envelope
from portal.keys import services, usage
from portal.models import ApiKey, ApiKeyChange

MAX_KEYS_PER_ACCOUNT = 50

KeyResponse = envelope("ApiKeyResponse", s.ApiKeyWithUsage())
CreatedKeyResponse = envelope(
    "CreatedApiKeyResponse",
    s.ApiKeyWithUsage(),
    key=serializers.CharField(help_text="The full key: shown only in this response"),
)
KeyListResponse = envelope("ApiKeyListResponse", s.ApiKeyWithUsage(many=True), meta=PageMeta())
UsageResponse = envelope("ApiKeyUsageResponse", s.KeyUsage())
ChangesResponse = envelope("ApiKeyChangesResponse", s.KeyChange(many=True), meta=PageMeta())


class KeysView(APIView):
    key_scope = "keys"


def _active_keys(request: SignedRequest):
    return ApiKey.objects.filter(user=request.user, revoked_at__isnull=True)


def present(keys: list[ApiKey]) -> list[dict]:
    """The keys with today's and this month's usage (one query for them all)."""
    summaries = usage.summaries([key.pk for key in keys])
    return [
        {**s.ApiKeySerializer(key).data, "usage": s.KeyUsageSummary(summaries[key.pk]).data}
        for key in keys
    ]


class ApiKeyListView(KeysView):
    @extend_schema(
        summary="List your API keys, with their limits and usage",
        operation_id="api_keys_list",
        parameters=[s.ApiKeyListInput],
        responses=KeyListResponse,
    )
    def get(self, request: SignedRequest) -> Response:
        page = paginate(request, _active_keys(request), lambda key: key, s.ApiKeyListInput)
        return Response({**page, "data": present(page["data"])})

    @extend_schema(
        summary="Create an API key (the full key is returned only here)",
        request=s.CreateApiKeyInput,
        responses={201: CreatedKeyResponse},
    )
    def post(self, request: SignedRequest) -> Response:
        data = validated(s.CreateApiKeyInput, request.data)
        if _active_keys(request).count() >= MAX_KEYS_PER_ACCOUNT:
            raise ApiError(
                f"At most {MAX_KEYS_PER_ACCOUNT} active keys per account",
                code="key_limit_reached",
                status_code=status.HTTP_409_CONFLICT,
            )
        key, raw = services.create_key(actor=services.Actor.of(request), **data)
        return Response({"data": present([key])[0], "key": raw}, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(KeysView):
    @extend_schema(
        summary="Change an API key's name, scopes or limits (recorded in its audit trail)",
        request=s.UpdateApiKeyInput,
        responses=KeyResponse,
    )
    def patch(self, request: SignedRequest, key_id: str) -> Response:
        key = get_object_or_404(_active_keys(request), pk=key_id)
        data = validated(s.UpdateApiKeyInput, request.data)
        key = services.update_key(actor=services.Actor.of(request), key=key, changes=data)
        return Response({"data": present([key])[0]})

    # 200 with the key, not 204: Archipelag's SDKs read every success as JSON (the Python
    # one takes only 200 and 201), so an empty answer fails them.
    @extend_schema(
        summary="Revoke an API key (refused from then on); answers the key as it was",
        responses={200: KeyResponse},
    )
    def delete(self, request: SignedRequest, key_id: str) -> Response:
        key = get_object_or_404(_active_keys(request), pk=key_id)
        services.revoke_key(actor=services.Actor.of(request), key=key)
        return Response({"data": present([key])[0]})


class ApiKeyUsageView(KeysView):
    @extend_schema(
        summary="An API key's usage per day over a window",
        parameters=[s.UsageInput],
        responses=UsageResponse,
    )
    def get(self, request: SignedRequest, key_id: str) -> Response:
        key = get_object_or_404(ApiKey, pk=key_id, user=request.user)
        window = validated(s.UsageInput, request.query_params.dict())["window"]
        return Response({"data": s.KeyUsage(usage.key_usage(key.pk, window)).data})


def _present_change(change: ApiKeyChange) -> dict:
    return s.KeyChange(change).data


class ApiKeyChangesView(KeysView):
    @page_schema("The audit trail of all your API keys, newest first", ChangesResponse)
    def get(self, request: SignedRequest) -> Response:
        return Response(paginate(request, services.changes_of(request.user), _present_change))


class ApiKeyChangesOfKeyView(KeysView):
    @page_schema("The audit trail of one API key", ChangesResponse)
    def get(self, request: SignedRequest, key_id: str) -> Response:
        key = get_object_or_404(ApiKey, pk=key_id, user=request.user)
        changes = services.changes_of(request.user, key.pk)
        return Response(paginate(request, changes, _present_change))
