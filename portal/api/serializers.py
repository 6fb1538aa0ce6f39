"""Input and output shapes of the account and API-key endpoints."""

from rest_framework import serializers

from portal.api.base import InputSerializer, PageSerializer
from portal.models import ApiKey


class AccountSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()
    credits = serializers.FloatField(help_text="Available credits")
    held = serializers.FloatField(help_text="Credits held for running jobs")
    earnings = serializers.FloatField(help_text="What your Islands earned, net of fees")
    created_at = serializers.DateTimeField()


class ApiKeySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The first 8 characters of the key")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiKey.SCOPES))
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="Updated once a minute")
    expires_at = serializers.DateTimeField(allow_null=True)


class CreateApiKeyInput(InputSerializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKey.SCOPES),
        min_length=1,
        max_length=len(ApiKey.SCOPES),
        required=False,
        default=list(ApiKey.SCOPES),
        help_text="Default: both",
    )


class ApiKeyListInput(PageSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=100)


# Envelopes, for the schema only (never instantiated: their field ``data`` would hide
# the serializer's own ``data``).
class AccountResponse(serializers.Serializer):
    data = AccountSerializer()  # type: ignore[assignment]


class ApiKeyResponse(serializers.Serializer):
    data = ApiKeySerializer()  # type: ignore[assignment]


class CreatedApiKeyResponse(ApiKeyResponse):
    key = serializers.CharField(help_text="The full key: shown only in this response")


class PageMeta(serializers.Serializer):
    total = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()


class ApiKeyListResponse(serializers.Serializer):
    data = ApiKeySerializer(many=True)  # type: ignore[assignment]
    meta = PageMeta()


class HealthResponse(serializers.Serializer):
    status = serializers.CharField()
    version = serializers.CharField()
