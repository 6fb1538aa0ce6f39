"""Input and output shapes of the API-key endpoints (portal.api.keys)."""

from datetime import datetime
from ipaddress import ip_network

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from portal.api.base import InputSerializer, PageSerializer
from portal.keys.usage import WINDOWS
from portal.models import ApiKey

MAX_ALLOWED = 50  # entries of a key's Cargo or address list


def _cap(help_text: str) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=20, decimal_places=6, min_value=0, allow_null=True, required=False,
        coerce_to_string=False, help_text=help_text,
    )  # fmt: skip


def _future(value: datetime) -> None:
    if value is not None and value <= timezone.now():
        raise serializers.ValidationError("Must be in the future.")


def _network(value: str) -> str:
    try:
        return str(ip_network(value, strict=False))
    except ValueError:
        raise serializers.ValidationError(f"Not an IP address or CIDR: {value}") from None


def _per_minute(value: int) -> None:
    if value is not None and value > settings.API_RATE_LIMIT:
        raise serializers.ValidationError(
            f"At most the account's limit, {settings.API_RATE_LIMIT} requests per minute."
        )


class KeyLimitsInput(InputSerializer):
    """The optional fields of a key: null (or absent at creation) means no limit."""

    expires_at = serializers.DateTimeField(
        allow_null=True, required=False, validators=[_future],
        help_text="After it, the key is refused (401)",
    )  # fmt: skip
    spend_cap_day = _cap("Credits per UTC day (402 key_spend_cap past it)")
    spend_cap_month = _cap("Credits per UTC month (402 key_spend_cap past it)")
    spend_cap_total = _cap("Credits in all (402 key_spend_cap past it)")
    jobs_per_minute = serializers.IntegerField(
        min_value=1, allow_null=True, required=False, validators=[_per_minute],
        help_text="Jobs submitted in any 60 s (429 key_job_rate past it), at most API_RATE_LIMIT",
    )  # fmt: skip
    allowed_cargos = serializers.ListField(
        child=serializers.SlugField(max_length=100), max_length=MAX_ALLOWED, required=False,
        help_text="The Cargos (slugs) it may run; empty: any (403 cargo_not_allowed)",
    )  # fmt: skip
    allowed_ips = serializers.ListField(
        child=serializers.CharField(max_length=50),
        max_length=MAX_ALLOWED, required=False,
        help_text="Addresses or CIDRs it may be used from; empty: any (403 ip_not_allowed)",
    )  # fmt: skip

    def validate_allowed_ips(self, value: list[str]) -> list[str]:
        return [_network(v) for v in value]

    def validate_allowed_cargos(self, value: list[str]) -> list[str]:
        return sorted(set(value))


SCOPES_HELP = (
    "read: safe methods; write: the others; keys: the /api-keys endpoints (a key makes"
    " and edits keys only within its own scopes and limits)"
)


class CreateApiKeyInput(KeyLimitsInput):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKey.SCOPES),
        min_length=1, max_length=len(ApiKey.SCOPES), required=False,
        default=["read", "write"], help_text=f"Default: read and write. {SCOPES_HELP}",
    )  # fmt: skip


class UpdateApiKeyInput(KeyLimitsInput):
    name = serializers.CharField(max_length=100, required=False)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKey.SCOPES),
        min_length=1, max_length=len(ApiKey.SCOPES), required=False, help_text=SCOPES_HELP,
    )  # fmt: skip


class UsageCounters(serializers.Serializer):
    requests = serializers.IntegerField(help_text="Up to a minute behind")
    jobs = serializers.IntegerField()
    tokens = serializers.IntegerField()
    credits_spent = serializers.FloatField(help_text="What its ended jobs cost")
    credits_held = serializers.FloatField(help_text="The budgets of its running jobs")


class UsageDay(UsageCounters):
    day = serializers.DateField()


class KeyUsageSummary(serializers.Serializer):
    today = UsageCounters()
    month = UsageCounters()


class ApiKeySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The first 8 characters of the key")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiKey.SCOPES))
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="Updated once a minute")
    expires_at = serializers.DateTimeField(allow_null=True)
    spend_cap_day = serializers.FloatField(allow_null=True)
    spend_cap_month = serializers.FloatField(allow_null=True)
    spend_cap_total = serializers.FloatField(allow_null=True)
    jobs_per_minute = serializers.IntegerField(allow_null=True)
    allowed_cargos = serializers.ListField(child=serializers.CharField())
    allowed_ips = serializers.ListField(child=serializers.CharField())


class ApiKeyWithUsage(ApiKeySerializer):
    usage = KeyUsageSummary(help_text="Today's and this month's (UTC)")


class ApiKeyListInput(PageSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=100)


class UsageInput(InputSerializer):
    window = serializers.ChoiceField(
        choices=list(WINDOWS), default="30d",
        help_text="day: today (UTC); 7d, 30d, 90d: that many days to today; month: this"
        " UTC month. Default 30d",
    )  # fmt: skip


class KeyUsage(serializers.Serializer):
    window = serializers.CharField()
    start = serializers.DateField(help_text="The first day (UTC)")
    end = serializers.DateField(help_text="Today (UTC)")
    totals = UsageCounters()
    days = UsageDay(many=True)


class KeyChange(serializers.Serializer):
    id = serializers.IntegerField()
    key_id = serializers.UUIDField()
    at = serializers.DateTimeField()
    action = serializers.ChoiceField(choices=["created", "updated", "revoked"])
    changes = serializers.DictField(
        child=serializers.ListField(), help_text="{field: [before, after]}"
    )
    by_key_id = serializers.UUIDField(allow_null=True, help_text="The key that made it")
    by_session = serializers.CharField(help_text="A hash of the portal session that made it")
    ip = serializers.CharField(allow_null=True)
