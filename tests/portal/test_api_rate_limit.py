"""100 requests a minute per key, shared by every web process through Redis."""

import time
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from portal import services
from portal.models import ApiKey
from tests.conftest import Server, start_server, stop_server


@pytest.fixture(scope="module")
def second_server(django_db_setup, django_db_blocker) -> Iterator[Server]:
    """Another uvicorn process on the same test database and Redis."""
    server = start_server()
    yield server
    stop_server(server)


def assert_rate_limited(response) -> None:
    assert response.status_code == 429
    body = response.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["message"] == "Rate limit exceeded"
    assert 1 <= body["error"]["retry_after"] <= 60
    assert response.headers["Retry-After"] == str(body["error"]["retry_after"])
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_the_101st_request_in_a_minute_is_refused_across_two_web_processes(
    live, second_server, user
):
    raw = services.create_api_key(user=user, name="busy")[1]
    with live.client(raw) as first, second_server.client(raw) as second:
        for i in range(100):
            response = (first, second)[i % 2].get("/account")
            assert response.status_code == 200, (i, response.text)
            assert response.headers["X-RateLimit-Limit"] == "100"
            assert response.headers["X-RateLimit-Remaining"] == str(99 - i)

        assert_rate_limited(first.get("/account"))
        assert_rate_limited(second.get("/account"))


def test_each_key_has_its_own_limit(api, user, settings):
    settings.API_RATE_LIMIT = 2
    other = APIClient()
    other.credentials(
        HTTP_AUTHORIZATION="Bearer " + services.create_api_key(user=user, name="b")[1]
    )
    api.get("/api/v1/account")
    api.get("/api/v1/account")

    assert_rate_limited(api.get("/api/v1/account"))
    assert other.get("/api/v1/account").status_code == 200


def test_a_refused_request_changes_nothing(api, user, settings):
    settings.API_RATE_LIMIT = 1
    api.get("/api/v1/account")

    assert_rate_limited(api.post("/api/v1/api-keys", {"name": "x"}, format="json"))
    assert ApiKey.objects.filter(user=user).count() == 1


def test_every_response_carries_the_rate_limit_headers(api, anon, user):
    before = int(time.time())
    responses = [
        api.get("/api/v1/account"),
        api.get("/api/v1/api-keys"),
        api.post("/api/v1/api-keys", {"name": "x"}, format="json"),
        api.post("/api/v1/api-keys", {"nope": 1}, format="json"),  # 422
        api.put("/api/v1/account"),  # 405
        api.delete("/api/v1/api-keys/00000000-0000-0000-0000-000000000000"),  # 404
        anon.get("/api/v1/health"),
        anon.get("/api/v1/unknown"),
    ]

    after = time.time()

    for response in responses:
        assert response["X-RateLimit-Limit"] in ("100", "300"), response.content
        assert int(response["X-RateLimit-Remaining"]) >= 0
        assert before < int(response["X-RateLimit-Reset"]) <= after + 61
    assert [r["X-RateLimit-Remaining"] for r in responses[:6]] == [
        "99", "98", "97", "96", "95", "94"
    ]  # fmt: skip


def test_anonymous_endpoints_are_limited_per_ip(anon, settings, db):
    settings.API_ANON_RATE_LIMIT = 3
    for _ in range(3):
        assert anon.get("/api/v1/health").status_code == 200

    assert_rate_limited(anon.get("/api/v1/health"))
    other_ip = anon.get("/api/v1/health", REMOTE_ADDR="10.0.0.9")
    assert other_ip.status_code == 200


def test_guessing_keys_is_limited_per_ip_before_the_database_is_asked(
    anon, settings, db, django_assert_num_queries
):
    settings.API_ANON_RATE_LIMIT = 3
    for i in range(3):
        anon.credentials(HTTP_AUTHORIZATION=f"Bearer ak_{i:040d}")
        assert anon.get("/api/v1/account").status_code == 401

    anon.credentials(HTTP_AUTHORIZATION="Bearer ak_" + "9" * 40)
    with django_assert_num_queries(0):
        assert_rate_limited(anon.get("/api/v1/account"))


def test_checking_a_key_and_its_limit_costs_no_database_query(api, django_assert_num_queries):
    api.get("/api/v1/api-keys")

    with django_assert_num_queries(0):
        assert api.put("/api/v1/account").status_code == 405  # auth, scope, limit: no view


def test_a_member_taken_with_the_count_is_taken_only_within_the_limit(db):
    """``ahit`` with ``take``: one script counts the request and takes a member of a
    bounded set (a stream slot); a request over its limit or with a revoked key takes
    nothing, and a full set gives nothing more."""
    import asyncio
    import uuid

    from core.counters import Take, ahit, mark_revoked
    from core.redis import redis_client

    key_id, bucket = str(uuid.uuid4()), f"test-take:{uuid.uuid4()}"
    members = f"test-members:{uuid.uuid4()}"

    async def hit(limit: int, member: str) -> tuple[bool, bool]:
        usage = await ahit(bucket, limit, key_id=key_id, take=Take(members, 2, 60.0, member))
        return usage.allowed, usage.taken

    async def scenario() -> list[tuple[bool, bool]]:
        return [await hit(3, "a"), await hit(3, "b"), await hit(3, "c"), await hit(3, "d")]

    # within the limit: two taken, the set is then full; over the limit: nothing taken
    assert asyncio.run(scenario()) == [(True, True), (True, True), (True, False), (False, False)]
    assert sorted(redis_client().zrange(members, 0, -1)) == [b"a", b"b"]
    redis_client().delete(members)
    mark_revoked(key_id)
    assert asyncio.run(hit(100, "e")) == (True, False)
    assert redis_client().zcard(members) == 0
