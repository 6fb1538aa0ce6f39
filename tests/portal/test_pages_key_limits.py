"""The API-key section of /settings: the keys scope only when ticked, limits edited in a
key's row with an audit entry, the usage chart, the recent changes."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.models import ApiKey, ApiKeyChange, ApiKeyDay
from portal.services import create_api_key

HTMX = {"HX-Request": "true"}
pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, user):
    """The test client, logged in as ``user``."""
    client.force_login(user)
    return client


@pytest.fixture
def key(user) -> ApiKey:
    return create_api_key(user=user, name="ci")[0]


def limits_of(key, **fields) -> dict:
    """The limits form's data for ``key``: every field empty but ``fields``."""
    names = ("spend_cap_day", "spend_cap_month", "spend_cap_total", "jobs_per_minute",
             "expires_at", "allowed_cargos", "allowed_ips")  # fmt: skip
    return {f"{key.pk}-{name}": fields.get(name, "") for name in names}


def test_a_key_made_on_the_page_has_the_keys_scope_only_when_ticked(signed_in, user):
    signed_in.post(
        reverse("api_keys"), {"name": "plain", "scopes": ["read", "write"]}, headers=HTMX
    )
    signed_in.post(reverse("api_keys"), {"name": "admin", "scopes": ["read", "keys"]}, headers=HTMX)
    assert ApiKey.objects.get(name="plain").scopes == ["read", "write"]
    assert ApiKey.objects.get(name="admin").scopes == ["keys", "read"]
    html = signed_in.get(reverse("settings")).content.decode()
    assert 'value="keys"' in html
    assert 'value="keys" checked' not in html


def test_a_key_made_on_the_page_is_in_the_audit_trail_by_session(signed_in, user):
    signed_in.post(reverse("api_keys"), {"name": "plain", "scopes": ["read"]}, headers=HTMX)
    change = ApiKeyChange.objects.get(key__name="plain")
    assert change.action == "created"
    assert (change.by_key_id, len(change.by_session)) == (None, 16)


def test_the_limits_form_opens_in_the_keys_row(signed_in, key):
    html = signed_in.get(reverse("api_key_limits", args=[key.pk]), headers=HTMX).content.decode()
    assert html.startswith(f'<tr id="key-{key.pk}"')
    assert "Credits per day" in html
    assert "Save limits" in html


def test_saving_limits_changes_the_key_and_records_it(signed_in, key):
    expires = (timezone.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    data = limits_of(key, spend_cap_day="2.5", jobs_per_minute="4", expires_at=expires,
                     allowed_cargos="llm-chat, sd-xl", allowed_ips="10.0.0.0/8 127.0.0.1")  # fmt: skip
    response = signed_in.post(reverse("api_key_limits", args=[key.pk]), data, headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Limits of “ci” saved." in html
    assert "2.5/day" in html
    key.refresh_from_db()
    assert (key.spend_cap_day, key.jobs_per_minute) == (Decimal("2.5"), 4)
    assert key.allowed_cargos == ["llm-chat", "sd-xl"]
    assert key.allowed_ips == ["10.0.0.0/8", "127.0.0.1/32"]
    assert key.expires_at.strftime("%Y-%m-%dT%H:%M") == expires
    change = ApiKeyChange.objects.get(key=key, action="updated")
    assert set(change.changes) == {"spend_cap_day", "jobs_per_minute", "expires_at",
                                   "allowed_cargos", "allowed_ips"}  # fmt: skip


@pytest.mark.parametrize(("field", "value"), [
    ("spend_cap_day", "-1"),
    ("jobs_per_minute", "100000"),
    ("allowed_ips", "not-an-address"),
    ("allowed_cargos", "bad/slug"),
    ("expires_at", "2001-01-01T00:00"),
])  # fmt: skip
def test_bad_limits_are_shown_in_the_form_and_change_nothing(signed_in, key, field, value):
    data = limits_of(key, **{field: value})
    response = signed_in.post(reverse("api_key_limits", args=[key.pk]), data, headers=HTMX)
    assert response.status_code == 422
    assert "field-error" in response.content.decode()
    key.refresh_from_db()
    assert getattr(key, field) in (None, [])
    assert not ApiKeyChange.objects.filter(key=key, action="updated").exists()


def test_another_accounts_key_limits_are_not_found(signed_in, other_user):
    theirs = create_api_key(user=other_user, name="theirs")[0]
    url = reverse("api_key_limits", args=[theirs.pk])
    assert signed_in.get(url).status_code == 404
    assert signed_in.post(url, limits_of(theirs, spend_cap_day="1")).status_code == 404


def test_each_key_shows_a_chart_of_its_last_30_days(signed_in, key):
    today = timezone.now().date()
    ApiKeyDay.objects.create(key=key, day=today, jobs=3, credits_spent=Decimal("1.5"))
    ApiKeyDay.objects.create(key=key, day=today - timedelta(days=40), jobs=9)
    html = signed_in.get(reverse("settings")).content.decode()
    assert html.count('class="usage-chart"') == 1
    assert 'aria-label="Usage over 30 days: 3 jobs, 1.50 credits"' in html
    assert html.count("<rect ") == 30
    assert f"{today:%b %-d}: 3 jobs, 1.50 credits" in html
