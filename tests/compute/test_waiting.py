"""Jobs that wait for an Island (compute.services.waiting): why, in the job API and in
the events of the job's stream, and the end of a wait that lasts past its limit (the
default's and a submission's own), with its hold released once."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import Balance, LedgerEntry
from compute.models import Job
from compute.seed import seed_cargos
from compute.services import dispatch, placement, sweep, waiting
from tests.billing.test_job_billing import assert_books_balance
from tests.compute.jobs_support import island, job_events, running_job

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("streams")]

# What the demo Island of `make run` offers: no GPU.
NO_GPU = {"cpu_cores": 4, "ram_mb": 16384, "gpu_vram_mb": 0}


@pytest.fixture(autouse=True)
def _index_sees_new_islands(settings):
    """Islands made between two submissions are in the placement index of the second."""
    settings.PLACEMENT_REFRESH_SECONDS = 0


@pytest.fixture
def demo_island(db):
    """The only Island online: it runs llmcpp Cargos, without a GPU."""
    seed_cargos()
    return island(capabilities=NO_GPU, runtimes=["llmcpp", "container"])


def submit(api, workload: str = "chat-test", **body):
    job_input = {"messages": [{"role": "user", "content": "Hi"}]}
    return api.post(
        "/api/v1/jobs", {"workload": workload, "input": job_input, **body}, format="json"
    )


def busy_island(chat):
    """An Island that can run ``chat`` and whose one slot a job takes."""
    host = island(max_concurrent_jobs=1)
    running_job(chat, host)
    return host


def expire(job: Job, *, after: float) -> dict[str, int]:
    """The sweep, ``after`` seconds past the job's creation."""
    return sweep.sweep_jobs(now=job.created_at + timedelta(seconds=after))


# --- why a job waits ----------------------------------------------------------------------
def test_a_job_no_online_island_can_run_waits_saying_so(api, demo_island):
    response = submit(api, "gguf-mistral-7b")
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["status"] == "queued"
    assert data["queue"]["reason"] == "no_island"
    assert data["queue"]["message"] == "no online Island can run this Cargo"
    assert api.get(f"/api/v1/jobs/{data['id']}").json()["data"]["queue"] == data["queue"]


def test_a_job_whose_fitting_islands_are_all_busy_waits_saying_so(api, chat):
    busy_island(chat)
    data = submit(api).json()["data"]
    assert data["status"] == "queued"
    assert data["queue"]["reason"] == "busy"
    assert data["queue"]["message"] == "all the Islands that can run this Cargo are busy"


def test_a_job_whose_fitting_islands_ask_too_much_waits_saying_so(api, chat):
    island(asking_prices={"chat-test": "0.5"})
    data = submit(api, bid="0.01").json()["data"]
    assert (data["status"], data["queue"]["reason"]) == ("queued", "over_budget")


def test_a_job_queued_behind_another_of_its_cargo_gives_the_same_reason(api, chat):
    first = submit(api).json()["data"]
    busy_island(chat)
    second = submit(api).json()["data"]
    assert first["queue"]["reason"] == "no_island"
    assert second["queue"]["reason"] == "busy"  # queued behind the first, yet told why


def test_a_running_or_finished_job_has_no_queue(api, chat):
    island()
    data = submit(api).json()["data"]
    assert (data["status"], data["queue"]) == ("running", None)
    Job.objects.filter(pk=data["id"]).update(status="completed")
    assert api.get(f"/api/v1/jobs/{data['id']}").json()["data"]["queue"] is None


def test_a_dispatch_pass_tells_a_waiting_jobs_clients_when_its_reason_changes(api, chat):
    """GIVEN a job waiting for want of any Island WHEN an Island that can run it comes
    online with no free slot THEN the next pass stores the new reason and publishes it as
    a status event; a pass that finds nothing new publishes nothing."""
    job_id = submit(api).json()["data"]["id"]
    busy_island(chat)
    dispatch.dispatch_queued()
    dispatch.dispatch_queued()
    assert Job.objects.get(pk=job_id).queue_reason == "busy"
    statuses = [e for e in job_events(job_id) if e["type"] == "status"]
    assert [(e["state"], e["reason"]) for e in statuses] == [("queued", "busy")]
    assert statuses[0]["message"] == "all the Islands that can run this Cargo are busy"
    assert statuses[0]["timeout_seconds"] == 300


def test_jobs_a_pass_does_not_try_are_told_their_reason_too(api, chat):
    """GIVEN three jobs of one Cargo waiting (the pass tries the first, then skips the
    others: the same needs) WHEN their Islands turn busy THEN all three say so."""
    ids = [submit(api).json()["data"]["id"] for _ in range(3)]
    busy_island(chat)
    dispatch.dispatch_queued()
    assert set(Job.objects.filter(pk__in=ids).values_list("queue_reason", flat=True)) == {"busy"}
    assert all(any(e.get("reason") == "busy" for e in job_events(i)) for i in ids)


def test_a_requeued_job_says_why_it_waits_and_what_took_it_back(chat):
    host = island()
    job = running_job(chat, host, lease_expires_at=timezone.now() - timedelta(seconds=1))
    sweep.sweep_jobs()
    job.refresh_from_db()
    assert (job.status, job.queue_reason) == ("queued", "no_island")  # its Island is excluded
    [requeued] = [e for e in job_events(job.pk) if e["type"] == "status"]
    assert requeued["state"] == "queued"
    assert (requeued["reason"], requeued["cause"]) == ("no_island", "lease expired")


# --- placement's filters decide the reason ----------------------------------------------
@pytest.mark.parametrize(("island_fields", "reason"), [
    ({}, "busy"),  # its only slot is taken (below)
    ({"max_concurrent_jobs": 2}, "busy"),  # a free slot, but its row said otherwise
    ({"cooldown_until": timezone.now() + timedelta(minutes=5)}, "busy"),
    ({"asking_prices": {"chat-test": "0.5"}}, "over_budget"),
    ({"status": "offline"}, "no_island"),
    ({"last_heartbeat_at": timezone.now() - timedelta(minutes=5)}, "no_island"),
    ({"suspended": True}, "no_island"),
    ({"runtimes": ["wasm"]}, "no_island"),
    ({"capabilities": NO_GPU}, "no_island"),
])  # fmt: skip
def test_the_reason_comes_from_placements_filters(chat, island_fields, reason):
    chat.required_vram_mb = 6000
    chat.save()
    host = island(**island_fields)
    running_job(chat, host)
    need = placement.Need.of(chat, budget=Decimal("0.01"), region="", excluded=(), asks={})
    assert placement.waiting_reason(need) == reason


def test_an_island_excluded_for_the_job_cannot_run_it(chat):
    host = island()
    need = placement.Need.of(chat, budget=1, region="", excluded=[host.pk], asks={})
    assert placement.waiting_reason(need) == "no_island"


# --- the end of a wait ------------------------------------------------------------------
def test_a_job_waits_the_default_limit_then_times_out_with_its_hold_released_once(api, chat):
    data = submit(api).json()["data"]
    job = Job.objects.get(pk=data["id"])
    assert data["queue"]["timeout_seconds"] == 300
    assert data["queue"]["expires_at"] == (job.created_at + timedelta(seconds=300)).isoformat(
    ).replace("+00:00", "Z")  # fmt: skip

    assert expire(job, after=299)["queue_expired"] == 0
    assert expire(job, after=301)["queue_expired"] == 1
    assert expire(job, after=400)["queue_expired"] == 0  # once

    job.refresh_from_db()
    assert job.status == "timeout"
    assert job.error == "No Island took the job within 300 s: no online Island can run this Cargo"
    assert job.credits_used == 0
    entries = LedgerEntry.objects.filter(job_id=job.pk)
    assert sorted(entries.values_list("kind", flat=True)) == ["hold", "release"]
    assert_books_balance(job.user)
    assert Balance.objects.get(user=job.user).held == 0


def test_the_default_limit_is_a_setting(api, chat, settings):
    settings.JOB_QUEUE_TIMEOUT_SECONDS = 60
    job = Job.objects.get(pk=submit(api).json()["data"]["id"])
    assert expire(job, after=59)["queue_expired"] == 0
    assert expire(job, after=61)["queue_expired"] == 1


def test_a_submission_may_ask_for_its_own_limit(api, chat):
    data = submit(api, queue_timeout_seconds=30).json()["data"]
    assert data["queue"]["timeout_seconds"] == 30
    job = Job.objects.get(pk=data["id"])
    assert expire(job, after=29)["queue_expired"] == 0
    assert expire(job, after=31)["queue_expired"] == 1
    job.refresh_from_db()
    assert (job.status, job.error) == (
        "timeout",
        "No Island took the job within 30 s: no online Island can run this Cargo",
    )
    assert_books_balance(job.user)


def test_the_end_of_a_wait_reaches_the_jobs_clients(api, chat):
    job = Job.objects.get(pk=submit(api, queue_timeout_seconds=5).json()["data"]["id"])
    expire(job, after=6)
    ending = job_events(job.pk)[-2:]
    assert [e["type"] for e in ending] == ["status", "error"]
    assert ending[0]["state"] == "timeout"
    assert ending[1]["error"].startswith("No Island took the job within 5 s")


def test_a_job_placed_before_its_limit_is_not_ended_by_it(api, chat):
    job = Job.objects.get(pk=submit(api, queue_timeout_seconds=5).json()["data"]["id"])
    island()
    dispatch.dispatch_queued()
    assert expire(job, after=30)["queue_expired"] == 0  # within its lease
    job.refresh_from_db()
    assert job.status == "running"
    assert sorted(LedgerEntry.objects.filter(job_id=job.pk).values_list("kind", flat=True)) == [
        "hold"
    ]


def test_a_requeued_job_waits_its_own_limit_again(api, chat):
    """GIVEN a job submitted ten minutes ago with a 30 s limit, placed at once WHEN its
    lease expires THEN it waits in the queue for 30 s from now, not from its submission."""
    island()
    job = Job.objects.get(pk=submit(api, queue_timeout_seconds=30).json()["data"]["id"])
    assert job.status == "running"
    now, long_ago = timezone.now(), timezone.now() - timedelta(minutes=10)
    Job.objects.filter(pk=job.pk).update(
        created_at=long_ago,
        queue_deadline_at=long_ago + timedelta(seconds=30),
        lease_expires_at=now - timedelta(seconds=1),
    )
    swept = sweep.sweep_jobs()
    assert (swept["lease_expired"], swept["queue_expired"]) == (1, 0)
    job.refresh_from_db()
    assert (job.status, job.island_id) == ("queued", None)
    assert timedelta(seconds=25) < job.queue_deadline_at - now <= timedelta(seconds=31)
    assert waiting.queue_of(job)["timeout_seconds"] == 30


@pytest.mark.parametrize("value", [0, -1, 86401, "ten", 1.5, True, None, [30]])
def test_a_limit_out_of_bounds_or_not_an_integer_is_refused_with_422(api, chat, value):
    response = submit(api, queue_timeout_seconds=value)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "queue_timeout_seconds" in error["details"]
    assert not Job.objects.exists()


def test_the_longest_limit_is_a_day(api, chat):
    assert submit(api, queue_timeout_seconds=86400).status_code == 201
