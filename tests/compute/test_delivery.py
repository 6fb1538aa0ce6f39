"""Assignments nobody acknowledged are offered again (compute.services.delivery), with a
real NATS server."""

from datetime import timedelta

import pytest
from django.utils import timezone

from compute.services import dispatch, jobs, sweep
from compute.services.publish import Assignment
from tests.compute.jobs_support import Inbox, assignments, island, running_job

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("streams")]


def overdue(**fields) -> dict:
    """An assignment made 10 s ago, as its fields."""
    return {"assigned_at": timezone.now() - timedelta(seconds=10), **fields}


def test_an_assignment_its_island_did_not_acknowledge_is_offered_to_it_again(chat):
    """GIVEN a job assigned 10 s ago to an Island that heartbeats but never said started
    THEN the sweep publishes it again, to the same Island, as the same attempt."""
    host = island()
    job = running_job(chat, host, **overdue())
    assert sweep.sweep_jobs()["offered_again"] == 1
    [payload] = assignments(host.pk)
    assert payload["job_id"] == str(job.pk)
    assert payload["lease_expires"] == int(job.lease_expires_at.timestamp() * 1000)
    job.refresh_from_db()
    assert (job.status, job.island_id, job.attempts, job.excluded_islands) == (
        "running", host.pk, 1, [],
    )  # fmt: skip
    assert sweep.sweep_jobs()["offered_again"] == 0  # its new deadline is not past yet


def test_a_field_island_gets_the_new_offer_on_core_nats(chat):
    host = island(nkey=None)
    job = running_job(chat, host, **overdue())
    inbox = Inbox(f"field.host.{host.pk}.jobs")
    assert sweep.sweep_jobs()["offered_again"] == 1
    assert [m["job_id"] for m in inbox.messages()] == [str(job.pk)]


def test_an_acknowledged_assignment_is_not_offered_again_and_its_lease_starts_afresh(
    chat, settings
):
    host = island()
    job = running_job(chat, host, **overdue(lease_expires_at=timezone.now() + timedelta(seconds=5)))
    assert jobs.apply_status(host_id=str(host.pk), job_id=str(job.pk), state="started")
    job.refresh_from_db()
    assert job.lease_expires_at > timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS - 5)
    assert sweep.sweep_jobs()["offered_again"] == 0
    assert assignments(host.pk, timeout=0.5) == []


def test_an_assignment_is_not_offered_again_before_its_deadline(chat, settings):
    settings.JOB_ACK_TIMEOUT_SECONDS = 30
    running_job(chat, island(), **overdue())
    assert sweep.sweep_jobs()["offered_again"] == 0


def test_a_silent_islands_unacknowledged_job_goes_to_another_island(chat):
    silent = island(last_heartbeat_at=timezone.now() - timedelta(minutes=5))
    job = running_job(chat, silent, **overdue())
    swept = sweep.sweep_jobs()
    assert (swept["offline"], swept["offered_again"]) == (1, 0)
    job.refresh_from_db()
    assert (job.status, job.excluded_islands) == ("queued", [str(silent.pk)])


def test_an_assignment_that_could_not_be_published_stays_with_its_island_for_a_new_offer(chat):
    """GIVEN a job whose assignment the Sail could not publish (it was committed)
    THEN it keeps its Island and its attempt (no requeue, no attempt counted against
    it), and the sweep publishes it once its deadline passed."""
    host = island()
    job = running_job(chat, host)
    failed = Assignment(job_id=job.pk, island_id=str(host.pk), attempt=1, payload={})
    dispatch.undelivered([failed])
    job.refresh_from_db()
    assert (job.status, job.island_id, job.attempts) == ("running", host.pk, 1)
    job.assigned_at = timezone.now() - timedelta(seconds=10)
    job.save(update_fields=["assigned_at"])
    assert sweep.sweep_jobs()["offered_again"] == 1
    assert [a["job_id"] for a in assignments(host.pk)] == [str(job.pk)]
