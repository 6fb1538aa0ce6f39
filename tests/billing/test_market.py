from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from compute.models import Cargo, Job, RateSnapshot, SavedBid
from compute.selectors import market as selectors
from compute.services import market as exchange
from tests.factories import CargoFactory, IslandFactory, JobFactory

D = Decimal


@pytest.fixture
def llm(db) -> Cargo:
    """A container LLM Cargo listed at 0.01."""
    return CargoFactory(slug="llm-chat", price_per_job=D("0.01"))


@pytest.fixture
def big_model(db) -> Cargo:
    """A Cargo that needs 20 GB of VRAM."""
    return CargoFactory(slug="big-llm", runtime_type="llmcpp", required_vram_mb=20000)


def test_a_snapshot_records_avg_min_max_and_the_number_of_islands(llm):
    IslandFactory(asking_prices={"llm-chat": "0.008"})
    IslandFactory(asking_prices={"_default": "0.012"})
    IslandFactory(asking_prices={"llm-chat": "0.010"}, status="offline")
    exchange.snapshot_rates()
    snap = RateSnapshot.objects.get(cargo=llm)
    assert (snap.min_price, snap.max_price, snap.avg_price, snap.num_hosts) == (
        D("0.008"),
        D("0.012"),
        D("0.010"),
        2,
    )


def test_an_owner_ask_set_through_the_api_overrides_the_heartbeat_ask(llm, api, user):
    island = IslandFactory(owner=user, asking_prices={"llm-chat": "0.5"})
    response = api.post(
        "/api/v1/market/asking-prices",
        {"host_id": str(island.pk), "prices": {"llm-chat": "0.02"}},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["data"]["asking_prices"] == {"llm-chat": "0.020000"}
    exchange.snapshot_rates()
    assert RateSnapshot.objects.get(cargo=llm).avg_price == D("0.02")


def test_nobody_sets_asks_for_someone_elses_island(llm, api, other_user):
    island = IslandFactory(owner=other_user)
    response = api.post(
        "/api/v1/market/asking-prices",
        {"host_id": str(island.pk), "prices": {"llm-chat": "0.02"}},
        format="json",
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_asking_prices_reject_unknown_cargos_and_negative_prices(llm, api, user):
    island = IslandFactory(owner=user)
    for prices in ({"nope": "1"}, {"llm-chat": "-1"}, {"llm-chat": "abc"}):
        response = api.post(
            "/api/v1/market/asking-prices",
            {"host_id": str(island.pk), "prices": prices},
            format="json",
        )
        assert response.status_code == 422, prices
        assert "details" in response.json()["error"]


def test_surge_multiplies_rates_when_queued_jobs_exceed_twice_the_free_capacity(llm, anon):
    IslandFactory(asking_prices={"llm-chat": "0.010"}, max_concurrent_jobs=1)
    exchange.snapshot_rates()
    assert anon.get("/api/v1/market/rates/llm-chat").json()["data"]["avg_price"] == "0.010000"
    JobFactory.create_batch(3, cargo=llm, status=Job.Status.QUEUED)
    cache.delete("market:surge")
    row = anon.get("/api/v1/market/rates/llm-chat").json()["data"]
    assert row["surge"] is True
    assert D(row["avg_price"]) == D("0.0125")
    assert D(row["suggested_bid"]) == D("0.0125") * D("1.05")


def test_budget_follows_job_bid_then_saved_bid_then_market_rate_then_list_price(llm, user):
    assert selectors.budget_for(user=user, cargo=llm) == D("0.01")
    IslandFactory(asking_prices={"llm-chat": "0.02"})
    exchange.snapshot_rates()
    assert selectors.budget_for(user=user, cargo=llm) == D("0.02")
    SavedBid.objects.create(user=user, cargo=llm, bid=D("0.03"))
    assert selectors.budget_for(user=user, cargo=llm) == D("0.03")
    assert selectors.budget_for(user=user, cargo=llm, bid=D("0.04")) == D("0.04")


@pytest.mark.parametrize(("window", "expected"), [("1h", 1), ("24h", 1), ("7d", 3), ("30d", 4)])
def test_history_windows_return_only_snapshots_inside_the_window(llm, anon, window, expected):
    now = timezone.now()  # ages in buckets of their own, days included
    for age in (timedelta(minutes=5), timedelta(hours=25), timedelta(days=3), timedelta(days=20)):
        RateSnapshot.objects.create(
            cargo=llm, avg_price=1, min_price=1, max_price=1, num_hosts=1, created_at=now - age
        )
    response = anon.get(f"/api/v1/market/history/llm-chat?window={window}")
    assert response.status_code == 200
    assert len(response.json()["data"]) == expected


def test_history_is_a_row_per_bucket_in_constant_queries(llm, anon, django_assert_max_num_queries):
    # A snapshot every 5 minutes: 30 days are 8,640 of them, which an anonymous client
    # must not be able to have read and sent on every request.
    now = timezone.now()
    RateSnapshot.objects.bulk_create(
        RateSnapshot(cargo=llm, avg_price=1 + i % 2, min_price=1, max_price=2 + i % 3,
                     num_hosts=1 + i % 4, created_at=now - timedelta(minutes=5 * i))
        for i in range(12 * 24 * 3)
    )  # fmt: skip
    with django_assert_max_num_queries(3):
        response = anon.get("/api/v1/market/history/llm-chat?window=30d")
    rows = response.json()["data"]
    assert 3 <= len(rows) <= 4  # a day each (3 days, which may straddle 4 calendar days)
    assert response.json()["meta"]["count"] == len(rows)
    full_day = rows[1]  # the first and the last may be parts of a day
    assert D(full_day["avg_price"]) == D("1.5")
    assert (D(full_day["min_price"]), D(full_day["max_price"]), full_day["num_hosts"]) == (1, 4, 4)
    hourly = anon.get("/api/v1/market/history/llm-chat?window=24h").json()["data"]
    assert 24 <= len(hourly) <= 25


def test_history_rejects_an_unknown_window(llm, anon):
    response = anon.get("/api/v1/market/history/llm-chat?window=2h")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_recommendations_are_sorted_by_demand_and_skip_cargos_the_island_cannot_serve(
    llm, big_model, anon
):
    small = IslandFactory(capabilities={"cpu_cores": 4, "ram_mb": 8000, "gpu_vram_mb": 8000})
    other = CargoFactory(slug="wasm-utils", runtime_type="wasm")
    JobFactory.create_batch(2, cargo=other, status=Job.Status.QUEUED)
    JobFactory(cargo=llm, status=Job.Status.QUEUED)
    JobFactory.create_batch(3, cargo=big_model, status=Job.Status.QUEUED)
    JobFactory(cargo=llm, status=Job.Status.COMPLETED, completed_at=timezone.now())
    body = anon.get(f"/api/v1/island/recommendations?host_id={small.pk}").json()
    assert body["host_id"] == str(small.pk)
    assert [(r["workload_slug"], r["demand_score"]) for r in body["recommendations"]] == [
        ("wasm-utils", 20),
        ("llm-chat", 12),
    ]


def test_the_networks_counts_are_made_once_for_everyone_who_asks_within_seconds(
    llm, anon, django_assert_max_num_queries
):
    # Every completed and queued job of the network are counted: not on every request of
    # a public endpoint (nor for each of thousands of Islands polling recommendations).
    islands = IslandFactory.create_batch(2)
    JobFactory(cargo=llm, status=Job.Status.QUEUED)
    anon.get("/api/v1/network/stats")
    anon.get(f"/api/v1/island/recommendations?host_id={islands[0].pk}")
    with django_assert_max_num_queries(0):
        stats = anon.get("/api/v1/network/stats").json()["data"]
    with django_assert_max_num_queries(2):  # the Island and the Cargos
        rows = anon.get(f"/api/v1/island/recommendations?host_id={islands[1].pk}").json()
    assert stats["online_islands"] == 2
    assert rows["recommendations"][0]["queued_demand"] == 1


def test_recommendations_need_a_valid_known_host_id(anon, db):
    assert anon.get("/api/v1/island/recommendations").status_code == 422
    assert anon.get("/api/v1/island/recommendations?host_id=nope").status_code == 422
    missing = "00000000-0000-4000-8000-000000000000"
    assert anon.get(f"/api/v1/island/recommendations?host_id={missing}").status_code == 404


def test_network_stats_count_online_islands_regions_and_completed_jobs(llm, anon):
    IslandFactory(region="eu-west")
    IslandFactory(region="us-east")
    IslandFactory(region="ap-south", status="offline")
    JobFactory(cargo=llm, status=Job.Status.COMPLETED)
    assert anon.get("/api/v1/network/stats").json()["data"] == {
        "online_islands": 2,
        "regions": ["eu-west", "us-east"],
        "jobs_completed": 1,
    }
