"""What the API-key section of /settings shows (portal.key_views)."""

from portal.forms import ApiKeyForm
from portal.keys import chart, usage
from portal.keys.services import changes_of
from portal.models import ApiKey, User

CHART_DAYS = 30
SHOWN_CHANGES = 20


def keys_context(user: User, **overrides) -> dict:
    """The active keys, each with its chart of 30 days, the recent changes, the form."""
    active = list(ApiKey.objects.filter(user=user, revoked_at__isnull=True))
    series = usage.last_days([key.pk for key in active], CHART_DAYS)
    for key in active:
        key.chart = chart.svg(series[key.pk])  # type: ignore[attr-defined]
    changes = changes_of(user)[:SHOWN_CHANGES]
    return {"key_form": ApiKeyForm(), "api_keys": active, "key_changes": changes, **overrides}
