"""GET/POST /api-keys and DELETE /api-keys/:id."""

import hashlib
import uuid
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal import services
from portal.models import ApiKey

KEY_FIELDS = {"id", "name", "prefix", "scopes", "created_at", "last_used_at", "expires_at",
              "spend_cap_day", "spend_cap_month", "spend_cap_total", "jobs_per_minute",
              "allowed_cargos", "allowed_ips", "usage"}  # fmt: skip


def create(api, **body):
    return api.post("/api/v1/api-keys", body, format="json")


def test_creating_a_key_returns_every_field_and_the_full_key_once(api):
    response = create(api, name="Development")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"data", "key"}
    assert set(body["data"]) == KEY_FIELDS
    assert body["data"]["name"] == "Development"
    assert body["data"]["scopes"] == ["read", "write"]
    assert body["data"]["last_used_at"] is None
    assert body["data"]["expires_at"] is None
    assert body["key"].startswith("ak_")
    assert len(body["key"]) >= 3 + 32
    assert body["data"]["prefix"] == body["key"][:8]


def test_a_new_key_works_at_once(api):
    raw = create(api, name="ci").json()["key"]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert api.get("/api/v1/account").status_code == 200


def test_only_the_sha256_of_a_new_key_is_stored(api):
    body = create(api, name="secret").json()
    raw = body["key"]

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM portal_apikey WHERE id = %s", [body["data"]["id"]])
        row = [str(value) for value in cursor.fetchone()]

    assert not any(raw in value for value in row)
    assert not any(raw[8:] in value for value in row)
    assert hashlib.sha256(raw.encode()).hexdigest() in row


def test_the_full_key_is_never_shown_again(api):
    raw = create(api, name="once").json()["key"]

    listing = api.get("/api/v1/api-keys").content.decode()

    assert raw not in listing
    assert raw[:8] in listing


def test_a_key_can_be_limited_to_one_scope(api):
    response = create(api, name="reader", scopes=["read"])

    assert response.status_code == 201
    assert response.json()["data"]["scopes"] == ["read"]
    assert ApiKey.objects.get(name="reader").scopes == ["read"]


def test_an_unknown_scope_is_rejected_with_details(api, user):
    response = create(api, name="admin", scopes=["admin"])

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert "scopes" in response.json()["error"]["details"]
    assert ApiKey.objects.filter(user=user).count() == 1


def test_an_empty_scope_list_is_rejected(api):
    assert create(api, name="none", scopes=[]).status_code == 422


def test_a_key_needs_a_name(api):
    response = create(api)

    assert response.status_code == 422
    assert response.json()["error"]["details"] == {"name": ["This field is required."]}


def test_listing_shows_your_active_keys_with_the_same_fields_and_meta(api, user, other_user):
    services.create_api_key(user=user, name="second")
    revoked = services.create_api_key(user=user, name="revoked")[0]
    services.revoke_api_key(key=revoked)
    services.create_api_key(user=other_user, name="not yours")

    body = api.get("/api/v1/api-keys").json()

    assert sorted(key["name"] for key in body["data"]) == ["second", "test"]
    assert all(set(key) == KEY_FIELDS for key in body["data"])
    assert body["meta"] == {"total": 2, "limit": 100, "offset": 0}


def test_listing_pages_with_limit_and_offset(api, user):
    for name in ("a", "b", "c"):
        services.create_api_key(user=user, name=name)

    body = api.get("/api/v1/api-keys?limit=2&offset=1").json()

    assert len(body["data"]) == 2
    assert body["meta"] == {"total": 4, "limit": 2, "offset": 1}


def test_listing_costs_the_same_queries_for_many_keys(api, user, django_assert_max_num_queries):
    api.get("/api/v1/api-keys")  # caches the key and writes last_used_at
    for i in range(10):
        services.create_api_key(user=user, name=f"k{i}")

    with django_assert_max_num_queries(3):  # the count, the page, the page's usage
        assert len(api.get("/api/v1/api-keys").json()["data"]) == 11


def test_deleting_a_key_revokes_it_and_it_disappears_from_the_list(api, user):
    body = create(api, name="temp").json()
    key_id = body["data"]["id"]

    response = api.delete(f"/api/v1/api-keys/{key_id}")

    assert response.status_code == 200
    assert response.json()["data"]["id"] == key_id
    assert response.json()["data"]["name"] == "temp"
    assert ApiKey.objects.get(pk=key_id).revoked_at is not None
    assert key_id not in api.get("/api/v1/api-keys").content.decode()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {body['key']}")
    assert api.get("/api/v1/account").status_code == 401


def test_a_key_can_revoke_itself_and_is_refused_at_once(api, user):
    key = ApiKey.objects.get(user=user)

    assert api.delete(f"/api/v1/api-keys/{key.pk}").status_code == 200

    assert api.get("/api/v1/account").status_code == 401


def test_deleting_a_key_twice_is_not_found(api, user):
    key = services.create_api_key(user=user, name="gone")[0]
    api.delete(f"/api/v1/api-keys/{key.pk}")

    response = api.delete(f"/api/v1/api-keys/{key.pk}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_another_users_key_is_not_found_and_stays_valid(api, other_user):
    theirs = services.create_api_key(user=other_user, name="theirs")[0]

    response = api.delete(f"/api/v1/api-keys/{theirs.pk}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_an_unknown_or_non_uuid_key_id_is_not_found(api):
    for key_id in (uuid.uuid4(), "key_abc123", "1", "%00"):
        response = api.delete(f"/api/v1/api-keys/{key_id}")

        assert response.status_code == 404, key_id
        assert response.json()["error"]["code"] == "not_found"


def test_the_number_of_active_keys_is_capped(api, user):
    for i in range(49):
        services.create_api_key(user=user, name=f"k{i}")

    response = create(api, name="one too many")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "key_limit_reached"
    assert ApiKey.objects.filter(user=user).count() == 50


def test_the_first_request_records_last_used_at(api, user):
    api.get("/api/v1/account")

    assert ApiKey.objects.get(user=user).last_used_at is not None


def test_a_second_request_within_the_minute_does_not_touch_the_key_row(api, user):
    api.get("/api/v1/account")

    with CaptureQueriesContext(connection) as queries:
        assert api.get("/api/v1/account").status_code == 200

    assert [q["sql"] for q in queries if "portal_apikey" in q["sql"]] == []
    assert len(queries) == 1  # the balance


def test_last_used_at_is_written_again_once_a_minute_has_passed(api, user):
    """GIVEN a key last used two minutes ago, as the cache of this process was refreshed
    WHEN it is used
    THEN last_used_at moves to now."""
    from portal import keycache

    two_minutes_ago = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.filter(user=user).update(last_used_at=two_minutes_ago)
    keycache._cache.clear()
    keycache._cache_loaded.clear()

    with CaptureQueriesContext(connection) as queries:
        api.get("/api/v1/account")

    assert ApiKey.objects.get(user=user).last_used_at > two_minutes_ago
    assert len([q for q in queries if q["sql"].startswith("UPDATE")]) == 1


def test_a_key_used_recently_elsewhere_is_not_written_again(api, user):
    """Another process wrote last_used_at ten seconds ago; loading the key here must not
    write it again."""
    recently = timezone.now() - timedelta(seconds=10)
    ApiKey.objects.filter(user=user).update(last_used_at=recently)

    with CaptureQueriesContext(connection) as queries:
        api.get("/api/v1/account")

    assert not [q for q in queries if q["sql"].startswith("UPDATE")]
    assert ApiKey.objects.get(user=user).last_used_at == recently
