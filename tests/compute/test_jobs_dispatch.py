"""Dispatch over JetStream, the queue, leases, time limits and dropped Islands, with a
real NATS server (compute.services.dispatch)."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from compute.models import Job
from compute.services import dispatch, jobs, submission, sweep
from core import tx
from tests.compute.jobs_support import Inbox, assignments, island, job_events, running_job
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("streams")]


@pytest.fixture
def submit(django_capture_on_commit_callbacks):
    """Submit a job as a new user and run what happens on commit (its dispatch)."""

    def go(cargo, **fields) -> Job:
        with django_capture_on_commit_callbacks(execute=True):
            user = fields.pop("user", None) or UserFactory(credits=100)
            job = tx.sync(submission.submit_job, user=user, workload=cargo.slug,
                          job_input={"prompt": "Hi"}, **fields)  # fmt: skip
        job.refresh_from_db()
        return job

    return go


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run a call and then its on-commit side effects."""

    def go(function, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return function(*args, **kwargs)

    return go


def test_a_job_is_published_to_the_chosen_islands_durable_consumer(chat, submit):
    chat.spec = {"container_image": "archipelago/llm-chat:1", "sandbox_tier": "standard"}
    chat.save()
    host = island()
    job = submit(chat)
    assert (job.status, job.island_id, job.attempts) == ("running", host.pk, 1)
    [payload] = assignments(host.pk)
    assert payload["job_id"] == str(job.pk)
    assert payload["workload_id"] == "chat-test"
    assert payload["runtime_type"] == "container"
    assert payload["input"] == {"prompt": "Hi"}
    assert payload["container_image"] == "archipelago/llm-chat:1"
    assert payload["sandbox_tier"] == "standard"
    assert payload["lease_expires"] == int(job.lease_expires_at.timestamp() * 1000)
    assert job.price == chat.price_per_job


def test_a_job_clears_at_the_islands_ask(chat, submit):
    island(asking_prices={"chat-test": "0.004"})
    job = submit(chat)
    assert str(job.price) == "0.004000"


def test_with_no_fitting_island_a_job_waits_queued_then_goes_to_one_that_appears(
    chat, submit, on_commit
):
    job = submit(chat)
    assert job.status == "queued"
    assert job.island_id is None
    host = island()
    assert on_commit(dispatch.dispatch_queued) == 1
    job.refresh_from_db()
    assert (job.status, job.island_id) == ("running", host.pk)
    assert [a["job_id"] for a in assignments(host.pk)] == [str(job.pk)]


def test_queued_jobs_go_out_by_priority_then_age(chat, submit, on_commit):
    low, high_old, high_new = (
        submit(chat, priority=1),
        submit(chat, priority=50),
        submit(chat, priority=50),
    )
    assert {j.status for j in (low, high_old, high_new)} == {"queued"}
    host = island(max_concurrent_jobs=2)
    assert on_commit(dispatch.dispatch_queued) == 2
    got = {a["job_id"] for a in assignments(host.pk, n=3)}
    assert got == {str(high_old.pk), str(high_new.pk)}
    Job.objects.filter(pk=high_old.pk).update(status="completed")
    on_commit(dispatch.dispatch_queued)
    assert [a["job_id"] for a in assignments(host.pk)] == [str(low.pk)]


def test_a_new_job_does_not_overtake_a_queued_one(chat, submit, on_commit):
    first = submit(chat)
    host = island()
    second = submit(chat)
    assert second.status == "queued"
    on_commit(dispatch.dispatch_queued)
    first.refresh_from_db()
    assert first.island_id == host.pk


def test_a_job_s_end_dispatches_the_job_waiting_for_its_slot(chat, submit, on_commit):
    """GIVEN an Island of one slot, a job running on it and another queued WHEN the first
    succeeds THEN the queued job gets the freed slot (its end asks for a pass: beat is
    not needed)."""
    host = island(max_concurrent_jobs=1)
    first, second = submit(chat), submit(chat)
    assert (first.status, second.status) == ("running", "queued")
    passes = []
    real = dispatch.request_dispatch

    def run_now():  # what the worker does with the pass requested
        passes.append(1)
        real()
        dispatch.dispatch_queued()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dispatch, "request_dispatch", run_now)
        on_commit(jobs.apply_status, host_id=str(host.pk), job_id=str(first.pk), state="succeeded")
    second.refresh_from_db()
    assert passes == [1]
    assert (second.status, second.island_id) == ("running", host.pk)


def test_a_job_s_end_asks_for_no_pass_when_nothing_waits(chat, submit, on_commit, monkeypatch):
    host = island()
    job = submit(chat)
    passes = []
    monkeypatch.setattr(dispatch, "request_dispatch", lambda: passes.append(1))
    on_commit(jobs.apply_status, host_id=str(host.pk), job_id=str(job.pk), state="succeeded")
    job.refresh_from_db()
    assert job.status == "completed"
    assert passes == []


def test_an_island_never_gets_more_jobs_than_its_slots(chat, submit):
    host = island(max_concurrent_jobs=1)
    first, second = submit(chat), submit(chat)
    assert (first.status, second.status) == ("running", "queued")
    assert len(assignments(host.pk, n=2, timeout=0.5)) == 1


def test_cancelling_a_running_job_tells_its_island(chat, submit, on_commit):
    host = island()
    user = UserFactory(credits=100)
    job = submit(chat, user=user)
    inbox = Inbox(f"host.{host.pk}.cancel")
    cancelled = on_commit(jobs.cancel_job, user=user, job_id=job.pk)
    assert cancelled.status == "cancelled"
    assert inbox.messages() == [{"job_id": str(job.pk)}]
    assert [e["type"] for e in job_events(job.pk)][-2:] == ["status", "error"]


def test_an_expired_lease_requeues_the_job_to_another_island(chat, on_commit):
    first, second = island(), island()
    job = running_job(chat, first, lease_expires_at=timezone.now() - timedelta(seconds=1))
    inbox = Inbox(f"host.{first.pk}.cancel")
    assert on_commit(sweep.sweep_jobs)["lease_expired"] == 1
    job.refresh_from_db()
    assert (job.status, job.island_id, job.excluded_islands) == ("queued", None, [str(first.pk)])
    assert inbox.messages() == [{"job_id": str(job.pk)}]
    on_commit(dispatch.dispatch_queued)
    job.refresh_from_db()
    assert (job.status, job.island_id, job.attempts) == ("running", second.pk, 2)
    assert [a["job_id"] for a in assignments(second.pk)] == [str(job.pk)]


def test_a_job_fails_after_its_last_attempt(chat, on_commit, settings):
    settings.JOB_MAX_ATTEMPTS = 2
    host = island()
    job = running_job(
        chat, host, attempts=2, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    on_commit(sweep.sweep_jobs)
    job.refresh_from_db()
    assert job.status == "failed"
    assert "2 attempts" in job.error


def test_a_job_over_its_time_limit_times_out_and_its_island_is_told(chat, on_commit):
    host = island()
    job = running_job(chat, host, deadline_at=timezone.now() - timedelta(seconds=1))
    inbox = Inbox(f"host.{host.pk}.cancel")
    assert on_commit(sweep.sweep_jobs)["timed_out"] == 1
    job.refresh_from_db()
    assert job.status == "timeout"
    assert job.completed_at is not None
    assert inbox.messages() == [{"job_id": str(job.pk)}]
    host.refresh_from_db()
    assert host.jobs_failed == 1
    assert job_events(job.pk)[-1]["type"] == "error"


def test_jobs_of_an_island_that_went_silent_are_requeued(chat, on_commit):
    host = island(last_heartbeat_at=timezone.now() - timedelta(minutes=5))
    job = running_job(chat, host)
    assert on_commit(sweep.sweep_jobs)["offline"] == 1
    job.refresh_from_db()
    assert job.status == "queued"
    assert job.excluded_islands == [str(host.pk)]


def test_every_running_job_of_a_silent_island_is_requeued_and_no_other(chat, on_commit):
    host = island(max_concurrent_jobs=3, last_heartbeat_at=timezone.now() - timedelta(minutes=5))
    kept = running_job(chat, island())
    dropped = [running_job(chat, host), running_job(chat, host)]
    assert on_commit(sweep.sweep_jobs)["offline"] == 2
    assert {j.status for j in Job.objects.filter(pk__in=[d.pk for d in dropped])} == {"queued"}
    kept.refresh_from_db()
    assert kept.status == "running"


def test_requeue_forgets_the_output_of_the_dropped_attempt(chat, on_commit):
    host = island()
    job = running_job(chat, host, output="partial", last_seq=3, started_at=timezone.now())
    on_commit(dispatch.requeue_job, job_id=job.pk, island_id=host.pk, reason="test")
    job.refresh_from_db()
    assert (job.output, job.last_seq, job.started_at) == ("", 0, None)


def test_dispatching_an_unknown_or_finished_job_does_nothing(chat):
    assert dispatch.dispatch_job(uuid.uuid4()) == "gone"
    job = running_job(chat, island())
    Job.objects.filter(pk=job.pk).update(status="completed")
    assert dispatch.dispatch_job(job.pk) == "gone"


def test_a_pass_that_dies_blocks_the_next_passes_for_seconds_not_a_minute(monkeypatch):
    """GIVEN a dispatch pass in progress (its worker may be killed at any moment)
    THEN the lock it holds expires within PASS_LOCK_SECONDS."""
    import threading

    from core.redis import redis_client

    inside, release = threading.Event(), threading.Event()

    def stuck(limit, *, renew):
        inside.set()
        release.wait(10)
        return 0

    monkeypatch.setattr(dispatch, "_pass", stuck)
    passing = threading.Thread(target=dispatch.dispatch_queued)
    passing.start()
    try:
        assert inside.wait(5)
        assert 0 < redis_client().ttl(dispatch.PASS_LOCK) <= dispatch.PASS_LOCK_SECONDS <= 10
    finally:
        release.set()
        passing.join()
