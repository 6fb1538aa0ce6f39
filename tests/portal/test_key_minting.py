"""Managing keys needs the ``keys`` scope, and a key makes, edits and revokes keys only
within its own scopes and limits (issue: a write-only key minted a read+write key)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from portal import services
from portal.models import ApiKey


def client_of(user, scopes=("read", "write", "keys"), **limits) -> tuple[APIClient, ApiKey]:
    key, raw = services.create_api_key(user=user, name="actor", scopes=scopes, **limits)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client, key


def mint(client, **body):
    return client.post("/api/v1/api-keys", {"name": "minted", **body}, format="json")


def beyond(response) -> list[str]:
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "beyond_own_limits"
    return error["fields"]


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/v1/api-keys"),
    ("post", "/api/v1/api-keys"),
    ("get", "/api/v1/api-keys/changes"),
])  # fmt: skip
def test_a_key_without_the_keys_scope_cannot_manage_keys(user, method, path):
    client, _ = client_of(user, scopes=("read", "write"))
    response = getattr(client, method)(path, {"name": "x"} if method == "post" else None)
    assert response.status_code == 403
    assert ApiKey.objects.filter(user=user).count() == 1


def test_a_key_without_the_keys_scope_cannot_revoke_or_edit_another(user):
    client, _ = client_of(user, scopes=("read", "write"))
    other, _ = services.create_api_key(user=user, name="other")
    assert client.delete(f"/api/v1/api-keys/{other.pk}").status_code == 403
    assert client.patch(f"/api/v1/api-keys/{other.pk}", {"name": "x"}).status_code == 403
    other.refresh_from_db()
    assert (other.revoked_at, other.name) == (None, "other")


def test_a_write_only_key_cannot_mint_a_read_write_key(user):
    client, _ = client_of(user, scopes=("write", "keys"))
    assert beyond(mint(client, scopes=["read", "write"])) == ["scopes"]
    assert ApiKey.objects.filter(user=user).count() == 1


def test_a_key_mints_a_key_with_fewer_scopes(user):
    client, _ = client_of(user)
    response = mint(client, scopes=["read"])
    assert response.status_code == 201
    assert response.json()["data"]["scopes"] == ["read"]


def test_a_capped_key_cannot_mint_an_uncapped_or_higher_capped_key(user):
    client, _ = client_of(user, spend_cap_day=Decimal(5), jobs_per_minute=3)
    assert beyond(mint(client)) == ["spend_cap_day", "jobs_per_minute"]
    assert beyond(mint(client, spend_cap_day="6", jobs_per_minute=3)) == ["spend_cap_day"]
    response = mint(client, spend_cap_day="4.5", jobs_per_minute=2)
    assert response.status_code == 201
    assert (
        response.json()["data"]["spend_cap_day"],
        response.json()["data"]["jobs_per_minute"],
    ) == (4.5, 2)


def test_an_expiring_key_cannot_mint_a_key_that_outlives_it(user):
    ends = timezone.now() + timedelta(days=1)
    client, _ = client_of(user, expires_at=ends)
    assert beyond(mint(client)) == ["expires_at"]
    later = (ends + timedelta(days=1)).isoformat()
    assert beyond(mint(client, expires_at=later)) == ["expires_at"]
    sooner = (ends - timedelta(hours=1)).isoformat()
    assert mint(client, expires_at=sooner).status_code == 201


def test_a_key_limited_to_cargos_and_addresses_mints_only_within_them(user):
    client, _ = client_of(user, allowed_cargos=["a", "b"], allowed_ips=["10.0.0.0/8", "127.0.0.1"])
    assert beyond(mint(client)) == ["allowed_cargos", "allowed_ips"]
    assert beyond(mint(client, allowed_cargos=["a", "c"], allowed_ips=["10.1.0.0/16"])) == [
        "allowed_cargos"
    ]
    assert beyond(mint(client, allowed_cargos=["a"], allowed_ips=["0.0.0.0/0"])) == ["allowed_ips"]
    response = mint(client, allowed_cargos=["a"], allowed_ips=["10.1.0.0/16", "127.0.0.1/32"])
    assert response.status_code == 201


def test_a_key_cannot_raise_its_own_caps_or_scopes(user):
    client, key = client_of(user, spend_cap_month=Decimal(10))
    assert beyond(client.patch(f"/api/v1/api-keys/{key.pk}", {"spend_cap_month": "20"},
                               format="json")) == ["spend_cap_month"]  # fmt: skip
    assert beyond(client.patch(f"/api/v1/api-keys/{key.pk}", {"spend_cap_month": None},
                               format="json")) == ["spend_cap_month"]  # fmt: skip
    lower = client.patch(f"/api/v1/api-keys/{key.pk}", {"spend_cap_month": "8"}, format="json")
    assert lower.status_code == 200
    key.refresh_from_db()
    assert key.spend_cap_month == Decimal(8)


def test_a_key_cannot_edit_or_revoke_a_stronger_key_but_may_revoke_itself(user):
    client, key = client_of(user, spend_cap_day=Decimal(1))
    stronger, _ = services.create_api_key(user=user, name="stronger")
    assert beyond(client.delete(f"/api/v1/api-keys/{stronger.pk}")) == ["spend_cap_day"]
    assert beyond(client.patch(f"/api/v1/api-keys/{stronger.pk}", {"allowed_ips": ["10.0.0.1"]},
                               format="json")) == ["spend_cap_day"]  # fmt: skip
    assert client.delete(f"/api/v1/api-keys/{key.pk}").status_code == 200
    stronger.refresh_from_db()
    assert stronger.revoked_at is None
    assert stronger.allowed_ips == []


def test_a_session_creates_keys_without_bound(user, client):
    client.force_login(user)
    body = {"name": "full", "scopes": ["read", "write", "keys"]}
    response = client.post("/api/v1/api-keys", body, content_type="application/json")
    assert response.status_code == 201
    assert response.json()["data"]["scopes"] == ["keys", "read", "write"]


def test_keys_made_without_scopes_asked_have_no_keys_scope(user):
    client, _ = client_of(user)
    assert mint(client).json()["data"]["scopes"] == ["read", "write"]
