"""PATCH /api-keys/{id}, its audit trail, and the usage endpoints."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from portal import services
from portal.keys import usage
from portal.models import ApiKey, ApiKeyChange, ApiKeyDay


@pytest.fixture
def target(user) -> ApiKey:
    """A read+write key of ``user`` to edit."""
    return services.create_api_key(user=user, name="ci")[0]


def patch(api, key, body):
    return api.patch(f"/api/v1/api-keys/{key.pk}", body, format="json")


def test_patch_sets_every_limit_and_answers_the_key(api, target):
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    body = {"name": "ci-2", "spend_cap_day": "1.5", "spend_cap_month": "20", "spend_cap_total": "100",
            "jobs_per_minute": 5, "expires_at": expires.isoformat(),
            "allowed_cargos": ["llm-chat"], "allowed_ips": ["192.168.1.7", "10.0.0.0/8"]}  # fmt: skip
    response = patch(api, target, body)
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert (data["name"], data["spend_cap_day"], data["jobs_per_minute"]) == ("ci-2", 1.5, 5)
    assert data["allowed_ips"] == ["192.168.1.7/32", "10.0.0.0/8"]
    target.refresh_from_db()
    assert (target.spend_cap_total, target.expires_at) == (Decimal(100), expires)


def test_null_removes_a_limit(api, user):
    key, _ = services.create_api_key(user=user, name="capped", spend_cap_day=Decimal(1))
    assert patch(api, key, {"spend_cap_day": None}).status_code == 200
    key.refresh_from_db()
    assert key.spend_cap_day is None


@pytest.mark.parametrize(("body", "field"), [
    ({"spend_cap_day": "-1"}, "spend_cap_day"),
    ({"spend_cap_day": "abc"}, "spend_cap_day"),
    ({"jobs_per_minute": 0}, "jobs_per_minute"),
    ({"jobs_per_minute": 100_000}, "jobs_per_minute"),
    ({"allowed_ips": ["not-an-ip"]}, "allowed_ips"),
    ({"allowed_cargos": ["bad slug!"]}, "allowed_cargos"),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"scopes": ["admin"]}, "scopes"),
    ({"colour": "red"}, "colour"),
])  # fmt: skip
def test_bad_limits_are_refused_with_422_and_change_nothing(api, target, body, field):
    response = patch(api, target, body)
    assert response.status_code == 422
    assert field in response.json()["error"]["details"]
    assert not ApiKeyChange.objects.filter(key=target, action="updated").exists()


def test_another_accounts_key_cannot_be_edited(api, other_user):
    theirs, _ = services.create_api_key(user=other_user, name="theirs")
    assert patch(api, theirs, {"name": "mine"}).status_code == 404
    assert api.get(f"/api/v1/api-keys/{theirs.pk}/usage").status_code == 404
    assert api.get(f"/api/v1/api-keys/{theirs.pk}/changes").status_code == 404


def test_every_change_lands_in_the_audit_trail_with_who_when_what_and_which_key(api, user, target):
    admin = ApiKey.objects.get(name="test")
    patch(api, target, {"spend_cap_day": "2", "name": "ci-2"})
    api.delete(f"/api/v1/api-keys/{target.pk}")

    changes = api.get(f"/api/v1/api-keys/{target.pk}/changes").json()["data"]
    assert [c["action"] for c in changes] == ["revoked", "updated"]
    updated = changes[1]
    assert updated["changes"] == {"name": ["ci", "ci-2"], "spend_cap_day": [None, "2.000000"]}
    assert updated["by_key_id"] == str(admin.pk)
    assert updated["by_session"] == ""
    assert updated["ip"] == "127.0.0.1"
    assert timezone.now() - timedelta(minutes=1) < timezone.datetime.fromisoformat(updated["at"])


def test_a_change_from_the_portal_session_names_the_session_not_a_key(user, client, target):
    client.force_login(user)
    response = client.patch(f"/api/v1/api-keys/{target.pk}", {"jobs_per_minute": 3},
                            content_type="application/json")  # fmt: skip
    assert response.status_code == 200
    change = ApiKeyChange.objects.get(key=target, action="updated")
    assert change.by_key_id is None
    assert len(change.by_session) == 16
    assert client.session.session_key not in str(change.__dict__)


def test_the_accounts_trail_lists_the_keys_it_made_and_no_other_accounts(api, user, other_user):
    made = api.post("/api/v1/api-keys", {"name": "new", "spend_cap_day": "3"}, format="json")
    services.create_api_key(user=other_user, name="theirs")
    other = services.create_api_key(user=other_user, name="x")[0]
    services.revoke_api_key(key=other)
    changes = api.get("/api/v1/api-keys/changes").json()["data"]
    assert [(c["action"], c["key_id"]) for c in changes] == [("created", made.json()["data"]["id"])]
    assert changes[0]["changes"]["spend_cap_day"] == [None, "3.000000"]


def test_an_unchanged_patch_records_nothing(api, target):
    patch(api, target, {"name": "ci"})
    assert not ApiKeyChange.objects.filter(key=target, action="updated").exists()


def test_the_list_shows_todays_and_this_months_usage(api, target):
    today = timezone.now().date()
    ApiKeyDay.objects.create(key=target, day=today, jobs=2, tokens=30, credits_spent=Decimal("0.5"))
    if today.day > 1:
        ApiKeyDay.objects.create(key=target, day=today.replace(day=1), jobs=1)
    listed = {k["id"]: k for k in api.get("/api/v1/api-keys").json()["data"]}
    usage_of = listed[str(target.pk)]["usage"]
    assert (usage_of["today"]["jobs"], usage_of["today"]["tokens"]) == (2, 30)
    assert usage_of["today"]["credits_spent"] == 0.5
    assert usage_of["month"]["jobs"] == (3 if today.day > 1 else 2)


@pytest.mark.parametrize(("window", "days"), [("day", 1), ("7d", 7), ("30d", 30), ("90d", 90)])
def test_usage_over_a_window_has_one_entry_per_day_and_totals(api, target, window, days):
    today = timezone.now().date()
    ApiKeyDay.objects.create(key=target, day=today, requests=4, jobs=1)
    ApiKeyDay.objects.create(key=target, day=today - timedelta(days=6), jobs=5)
    ApiKeyDay.objects.create(key=target, day=today - timedelta(days=40), jobs=7)
    response = api.get(f"/api/v1/api-keys/{target.pk}/usage?window={window}")
    assert response.status_code == 200
    data = response.json()["data"]
    assert len(data["days"]) == days
    assert data["end"] == today.isoformat()
    expected = {1: 1, 7: 6, 30: 6, 90: 13}[days]
    assert data["totals"]["jobs"] == expected
    assert data["days"][-1]["requests"] == 4


def test_usage_of_this_month(api, target):
    data = api.get(f"/api/v1/api-keys/{target.pk}/usage?window=month").json()["data"]
    assert data["start"] == timezone.now().date().replace(day=1).isoformat()


def test_an_unknown_usage_window_is_refused(api, target):
    response = api.get(f"/api/v1/api-keys/{target.pk}/usage?window=year")
    assert response.status_code == 422
    assert "window" in response.json()["error"]["details"]


def test_requests_are_counted_per_key_and_flushed_to_the_day(user):
    from rest_framework.test import APIClient

    key, raw = services.create_api_key(user=user, name="counted")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    for _ in range(3):
        client.get("/api/v1/account")
    assert usage.flush_requests() == 1
    assert ApiKeyDay.objects.get(key=key).requests == 3
    client.get("/api/v1/account")
    usage.flush_requests()
    assert ApiKeyDay.objects.get(key=key).requests == 4
    assert usage.flush_requests() == 0  # nothing new


def test_a_revocation_in_the_admin_lands_in_the_owners_trail(
    client, user, target, django_user_model
):
    staff = django_user_model.objects.create_superuser(email="root@example.com", password="pw")
    client.force_login(staff)
    response = client.post(
        "/admin/portal/apikey/",
        {"action": "revoke", "_selected_action": [str(target.pk)]},
    )
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.revoked_at is not None
    change = ApiKeyChange.objects.get(key=target, action="revoked")
    assert (change.user, change.by_key_id, len(change.by_session)) == (staff, None, 16)
    client.force_login(user)
    assert "root@example.com, portal session" in client.get("/settings").content.decode()
