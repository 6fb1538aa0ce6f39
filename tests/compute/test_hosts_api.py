"""GET /api/v1/hosts, /hosts/:id, /hosts/:id/karma and /karma/history."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from compute.services import karma
from tests.factories import IslandFactory

PUBLIC_FIELDS = {
    "id",
    "name",
    "status",
    "region",
    "capabilities",
    "karma_score",
    "last_heartbeat_at",
}


@pytest.fixture
def online(user):
    """A paired Island heard from a second ago."""
    return IslandFactory(owner=user, name="attic", karma=7)


@pytest.fixture
def silent(other_user):
    """An Island whose status column still says online, but silent for a minute."""
    return IslandFactory(
        owner=other_user, name="basement", karma=3,
        last_heartbeat_at=timezone.now() - timedelta(seconds=60),
    )  # fmt: skip


def test_it_lists_every_island_with_public_fields_only(api, online, silent):
    body = api.get("/api/v1/hosts").json()
    assert body["meta"] == {"total": 2, "limit": 20, "offset": 0}
    assert [h["name"] for h in body["data"]] == ["attic", "basement"]  # by karma
    assert all(set(h) == PUBLIC_FIELDS for h in body["data"])
    assert [h["status"] for h in body["data"]] == ["online", "offline"]


def test_it_never_leaks_the_owner(api, online, user):
    text = (
        api.get("/api/v1/hosts").content.decode()
        + api.get(f"/api/v1/hosts/{online.pk}").content.decode()
    )
    assert user.email not in text
    assert "owner" not in text


@pytest.mark.parametrize(("status", "names"), [("online", ["attic"]), ("offline", ["basement"])])
def test_it_filters_by_live_status(api, online, silent, status, names):
    body = api.get(f"/api/v1/hosts?status={status}").json()
    assert [h["name"] for h in body["data"]] == names
    assert body["meta"]["total"] == 1


def test_it_refuses_an_unknown_status_filter(api):
    response = api.get("/api/v1/hosts?status=sleepy")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_it_paginates(api, online, silent):
    body = api.get("/api/v1/hosts?limit=1&offset=1").json()
    assert [h["name"] for h in body["data"]] == ["basement"]
    assert body["meta"] == {"total": 2, "limit": 1, "offset": 1}


def test_an_offset_past_any_list_is_refused_not_a_server_error(api):
    # Postgres's OFFSET is a 64-bit integer: a larger one must not reach it.
    for path in ("/hosts", "/jobs", "/workloads", "/api-keys", "/account/ledger"):
        response = api.get(f"/api/v1{path}?offset={10**25}")
        assert response.status_code == 422, path
        assert response.json()["error"]["details"]["offset"], path


def test_the_list_costs_a_constant_number_of_queries(api, online, django_assert_max_num_queries):
    IslandFactory.create_batch(15)
    api.get("/api/v1/hosts")  # warm the key cache
    with django_assert_max_num_queries(3):
        assert len(api.get("/api/v1/hosts").json()["data"]) == 16


def test_it_shows_one_island(api, online):
    body = api.get(f"/api/v1/hosts/{online.pk}").json()
    assert body["data"]["id"] == str(online.pk)
    assert body["data"]["capabilities"]["gpu_model"] == "RTX 4090"
    assert body["data"]["karma_score"] == 7
    assert set(body["data"]) == PUBLIC_FIELDS


def test_an_unknown_island_is_a_json_404(api):
    for path in ("", "/karma", "/karma/history"):
        response = api.get(f"/api/v1/hosts/{uuid.uuid4()}{path}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert api.get("/api/v1/hosts/not-a-uuid").status_code == 404


def test_it_shows_an_islands_karma(api, online):
    karma.credit_compute(island_id=online.pk, minutes=20)
    body = api.get(f"/api/v1/hosts/{online.pk}/karma").json()["data"]
    assert body == {
        "host_id": str(online.pk), "karma_score": 7, "pending_minutes": 30,
        "minutes_per_karma": 60, "monetization_threshold": 10, "monetization_unlocked": False,
        "jobs_completed": 0, "jobs_failed": 0,
    }  # fmt: skip


def test_it_shows_an_islands_karma_history_newest_first(api, online):
    karma.credit_compute(island_id=online.pk, minutes=60, job_id=uuid.uuid4())
    karma.change_karma(island_id=online.pk, delta=-1, reason="disconnection")
    body = api.get(f"/api/v1/hosts/{online.pk}/karma/history").json()
    assert [e["reason"] for e in body["data"]] == ["disconnection", "job_completed"]
    assert body["data"][1]["delta"] == 1
    assert body["data"][1]["minutes"] == 90
    assert "job_id" not in body["data"][1]  # whose job it was is not public
    assert body["meta"]["total"] == 2


def test_hosts_need_authentication(anon, online):
    for path in ("/api/v1/hosts", f"/api/v1/hosts/{online.pk}", f"/api/v1/hosts/{online.pk}/karma"):
        assert anon.get(path).status_code == 401
