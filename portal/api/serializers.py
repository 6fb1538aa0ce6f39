"""Input and output shapes of the account endpoints (API keys: portal.api.key_serializers)."""

from rest_framework import serializers


class AccountSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()
    credits = serializers.FloatField(help_text="Available credits")
    held = serializers.FloatField(help_text="Credits held for running jobs")
    earnings = serializers.FloatField(help_text="What your Islands earned, net of fees")
    created_at = serializers.DateTimeField()


def envelope(name: str, data: serializers.Field, **more: serializers.Field) -> type:
    """An answer ``{"data": ..., **more}``, named ``name`` in the OpenAPI document; for
    the document only (never instantiated: its field ``data`` hides the serializer's)."""
    return type(name, (serializers.Serializer,), {"data": data, **more})


class PageMeta(serializers.Serializer):
    total = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()


AccountResponse = envelope("AccountResponse", AccountSerializer())


class HealthResponse(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded"])
    version = serializers.CharField()
    degraded = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="With status degraded: the backing services that are away (redis)",
    )
