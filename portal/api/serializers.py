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


def envelope(name: str, data: serializers.Field, **more: serializers.Field) -> type:
    """An answer ``{"data": ..., **more}``, named ``name`` in the OpenAPI document; for
    the document only (never instantiated: its field ``data`` hides the serializer's)."""
    return type(name, (serializers.Serializer,), {"data": data, **more})


class PageMeta(serializers.Serializer):
    total = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()


AccountResponse = envelope("AccountResponse", AccountSerializer())
ApiKeyResponse = envelope("ApiKeyResponse", ApiKeySerializer())
CreatedApiKeyResponse = envelope(
    "CreatedApiKeyResponse",
    ApiKeySerializer(),
    key=serializers.CharField(help_text="The full key: shown only in this response"),
)
ApiKeyListResponse = envelope("ApiKeyListResponse", ApiKeySerializer(many=True), meta=PageMeta())


class HealthResponse(serializers.Serializer):
    status = serializers.CharField()
    version = serializers.CharField()
