"""Input and output shapes of the account endpoints (API keys: portal.api.key_serializers)."""

from rest_framework import serializers

from portal.models import AuditEntry


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


class AuditEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    action = serializers.ChoiceField(choices=AuditEntry.Action.choices)
    actor = serializers.ChoiceField(
        choices=AuditEntry.Actor.choices,
        help_text="Who acted: you, staff, one of your API keys, the coordinator, or someone "
        "not signed in (a failed sign-in)",
    )
    by_key_id = serializers.UUIDField(allow_null=True, help_text="The API key that acted")
    ip = serializers.CharField(allow_null=True, help_text="The address it came from, if known")
    details = serializers.DictField(help_text="What the action was about (never a secret)")


AuditResponse = envelope("AuditLogResponse", AuditEntrySerializer(many=True), meta=PageMeta())
