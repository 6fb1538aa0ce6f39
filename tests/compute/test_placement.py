"""Placement: filters, scores, region, warm Cargos (compute.services.placement)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from compute.capability import can_serve
from compute.models import Island, Job
from compute.services import placement
from compute.services.placement import Need
from tests.compute.jobs_support import island, running_job
from tests.factories import CargoFactory

pytestmark = pytest.mark.django_db

BIG = {"cpu_cores": 16, "ram_mb": 32000, "gpu_vram_mb": 24000}


def need(**fields) -> Need:
    base = {"runtime": "container", "slug": "chat", "cargo_id": 1, "budget": 1.0}
    return Need(**{**base, **fields})


def chosen(n: Need) -> list[str]:
    placement.reset_index()
    return [c.island_id for c in placement.choose(n, limit=10)]


@pytest.mark.parametrize("unfit", [
    {"last_heartbeat_at": timezone.now() - timedelta(seconds=31)},
    {"status": "offline"},
    {"suspended": True},
    {"cooldown_until": timezone.now() + timedelta(minutes=5)},
    {"runtimes": ["wasm"]},
    {"capabilities": {**BIG, "ram_mb": 4000}},
    {"capabilities": {**BIG, "gpu_vram_mb": 0}},
    {"asking_prices": {"chat": "1.5"}},
    {"asking_prices": {"_default": "2"}},
])  # fmt: skip
def test_an_island_that_does_not_fit_is_never_chosen(unfit):
    fit = island(capabilities=BIG)
    bad = island(**{"capabilities": BIG, **unfit})
    result = chosen(need(ram_mb=8000, vram_mb=6000))
    assert str(fit.pk) in result
    assert str(bad.pk) not in result


def test_a_cargo_specific_ask_overrides_the_default_ask():
    host = island(asking_prices={"_default": "5", "chat": "0.5"})
    [candidate] = placement.choose(need(), limit=1)
    assert candidate.island_id == str(host.pk)
    assert candidate.ask == 0.5


def test_an_island_with_all_slots_taken_by_our_jobs_is_skipped(chat):

    busy, free = island(max_concurrent_jobs=1), island(max_concurrent_jobs=1)
    running_job(chat, busy)
    assert chosen(need()) == [str(free.pk)]


def test_excluded_islands_are_skipped():
    a, b = island(), island()
    assert chosen(need(excluded=frozenset({str(a.pk)}))) == [str(b.pk)]


def test_the_faster_island_wins_for_llmcpp():
    slow = island(metrics={"performance_estimates": {"estimated_llm_tok_s": 10}})
    fast = island(metrics={"performance_estimates": {"estimated_llm_tok_s": 90}})
    assert chosen(need(runtime="llmcpp")) == [str(fast.pk), str(slow.pk)]


def test_memory_use_near_the_sweet_spot_beats_a_waste_and_a_squeeze():
    waste = island(capabilities={**BIG, "ram_mb": 128000})
    sweet = island(capabilities={**BIG, "ram_mb": 12000})
    squeeze = island(capabilities={**BIG, "ram_mb": 8200})
    result = chosen(need(ram_mb=8000))
    assert result[0] == str(sweet.pk)
    assert set(result[1:]) == {str(waste.pk), str(squeeze.pk)}


def test_an_idle_island_beats_a_busy_one(chat):

    busy, idle = island(max_concurrent_jobs=4), island(max_concurrent_jobs=4)
    running_job(chat, busy)
    running_job(chat, busy)
    assert chosen(need()) == [str(idle.pk), str(busy.pk)]


def test_karma_raises_the_score():
    novice, veteran = island(karma=0), island(karma=100)
    result = placement.choose(need(), limit=2)
    assert [c.island_id for c in result] == [str(veteran.pk), str(novice.pk)]
    assert result[0].score == result[1].score + 10
    assert all(0 <= c.score <= 100 for c in result)


def test_the_jobs_region_is_preferred_even_over_a_better_island():
    far = island(
        region="us-east", karma=100, metrics={"performance_estimates": {"gpu_bandwidth_gb_s": 1000}}
    )
    near = island(region="eu-west")
    assert chosen(need(region="eu-west")) == [str(near.pk), str(far.pk)]


def test_another_region_serves_when_the_jobs_region_has_no_island():
    far = island(region="us-east")
    assert chosen(need(region="ap-south")) == [str(far.pk)]


def test_a_warm_cargo_wins_a_tie():
    cold = island()
    warm = island(warm_workloads=["chat"])
    result = placement.choose(need(), limit=2)
    assert result[0].score == result[1].score
    assert [c.island_id for c in result] == [str(warm.pk), str(cold.pk)]
    assert result[0].warm
    assert not result[1].warm


def test_the_index_sees_new_heartbeats_after_a_refresh(settings):
    settings.PLACEMENT_REFRESH_SECONDS = 0
    assert placement.choose(need()) == []
    host = island()
    assert [c.island_id for c in placement.choose(need())] == [str(host.pk)]


@pytest.mark.django_db(transaction=True)
def test_decisions_made_while_the_index_first_loads_wait_for_it(settings):
    """GIVEN a process whose index is not loaded yet WHEN many decisions come at once
    THEN each one sees the Islands (none is made on a half-loaded, empty index)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    settings.PLACEMENT_REFRESH_IN_BACKGROUND = True
    host = island()
    placement.reset_index()

    def decide(_: int) -> list[str]:
        try:
            return [c.island_id for c in placement.choose(need())]
        finally:
            connection.close()

    with ThreadPoolExecutor(16) as pool:
        decisions = list(pool.map(decide, range(16)))
    assert decisions == [[str(host.pk)]] * 16


def test_a_full_reload_forgets_an_island_deleted_since():
    host_id = str(island().pk)
    assert [c.island_id for c in placement.choose(need())] == [host_id]
    Island.objects.filter(pk=host_id).delete()
    placement.index().refresh()  # a refresh reads only what changed: the row stays
    assert [c.island_id for c in placement.index().choose(need())] == [host_id]
    placement.index().refresh(full=True)
    assert placement.index().choose(need()) == []
    assert placement.index().waiting_reason(need()) == "no_island"


OCR_ONLY = {"performance_estimates": {"onnx_tasks": ["ocr"]}}


@pytest.mark.parametrize(("metrics", "task", "served"), [
    (OCR_ONLY, "ocr", True),
    (OCR_ONLY, "automatic-speech-recognition", False),
    ({"performance_estimates": {"onnx_tasks": []}}, "ocr", False),
    ({}, "automatic-speech-recognition", True),  # lists no tasks (a field Island): any
])  # fmt: skip
def test_an_onnx_cargo_goes_only_to_an_island_that_lists_its_task_or_lists_none(
    metrics, task, served
):
    host = island(runtimes=["onnx"], metrics=metrics)
    cargo = CargoFactory(runtime_type="onnx", onnx_task_type=task)
    onnx_need = Need.of(cargo, budget=1, region="", excluded=(), asks={})

    assert (str(host.pk) in chosen(onnx_need)) == served
    assert can_serve(host, cargo) == served  # the market and recommendations agree
    reason = placement.waiting_reason(onnx_need)
    assert (reason == Job.QueueReason.NO_ISLAND) == (not served)


def test_an_islands_new_task_list_replaces_its_old_one_in_the_index():
    host = island(runtimes=["onnx"], metrics=OCR_ONLY)
    ocr = Need.of(CargoFactory(runtime_type="onnx", onnx_task_type="ocr"),
                  budget=1, region="", excluded=(), asks={})  # fmt: skip
    index = placement.index()
    index.refresh(full=True)
    assert [c.island_id for c in index.choose(ocr)] == [str(host.pk)]

    Island.objects.filter(pk=host.pk).update(
        metrics={"performance_estimates": {"onnx_tasks": ["text-classification"]}},
        last_heartbeat_at=timezone.now(),
    )
    index.refresh()

    assert index.choose(ocr) == []
