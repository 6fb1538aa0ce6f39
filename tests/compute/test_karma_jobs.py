"""Karma from jobs (product-notes, "Karma"): pending minutes from completed jobs, 1.5x
below +10, +1 per 60 minutes, deductions on failure and timeout, exactly once per job,
every change a KarmaEvent; and higher karma wins placement. Real Postgres and NATS."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.settlement import split_fee
from compute import job_events as handlers
from compute.models import Island, Job, KarmaEvent
from compute.services import karma, submission, sweep
from core import tx
from tests.compute.jobs_support import island, running_job
from tests.factories import UserFactory
from tests.threads import at_once

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("streams")]


def run_for(host: Island, chat, seconds: float, state: str = "succeeded", **extra):
    """A job that started ``seconds`` ago on ``host`` ends now with ``state``."""
    started = timezone.now() - timedelta(seconds=seconds)
    job = running_job(chat, host, started_at=started, assigned_at=started)
    payload = {"job_id": str(job.pk), "state": state, "timestamp": 1, **extra}
    assert handlers.on_status(str(host.pk), payload) is True
    host.refresh_from_db()
    return job


def history(host: Island) -> list[tuple]:
    events = KarmaEvent.objects.filter(island=host).order_by("created_at", "id")
    return [(e.reason, e.delta, e.minutes, e.karma_after, e.pending_minutes_after) for e in events]


def test_59_minutes_at_the_threshold_leave_karma_alone_and_59_minutes_pending(chat):
    host = island(karma=10)
    job = run_for(host, chat, 59 * 60)
    assert (host.karma, host.pending_minutes, host.jobs_completed) == (10, 59, 1)
    assert history(host) == [("job_completed", 0, 59, 10, 59)]
    assert KarmaEvent.objects.get(island=host).job_id == job.pk


def test_a_new_island_with_59_minutes_at_1x_has_0_karma_and_59_pending(chat, settings):
    settings.KARMA_MONETIZATION_THRESHOLD = 0  # no multiplier for anyone
    host = island()
    run_for(host, chat, 59 * 60)
    assert (host.karma, host.pending_minutes) == (0, 59)


def test_below_10_karma_a_40_minute_job_counts_60_minutes_and_makes_1_karma(chat):
    host = island(karma=3)
    run_for(host, chat, 40 * 60)
    assert (host.karma, host.pending_minutes) == (4, 0)
    assert history(host) == [("job_completed", 1, 60, 4, 0)]


def test_below_10_karma_minutes_are_truncated_after_the_multiplier(chat):
    host = island(karma=0)
    run_for(host, chat, 5 * 60)  # 7.5 minutes: 7 pending, 30 s carried
    assert (host.pending_minutes, host.pending_seconds) == (7, 30)
    run_for(host, chat, 20)  # 30 s more: the carried half minute completes one
    assert (host.pending_minutes, host.pending_seconds) == (8, 0)
    assert [e[2] for e in history(host)] == [7, 1]


def test_at_or_above_10_karma_there_is_no_multiplier(chat):
    host = island(karma=10, pending_minutes=30)
    run_for(host, chat, 60 * 60)
    assert (host.karma, host.pending_minutes) == (11, 30)
    run_for(host, chat, 45 * 60)
    assert (host.karma, host.pending_minutes) == (12, 15)


def test_the_multiplier_follows_the_karma_before_each_job(chat):
    host = island(karma=9, pending_minutes=50)
    run_for(host, chat, 10 * 60)  # 15 minutes at 1.5x: 65 -> +1 karma (now 10), 5 pending
    assert (host.karma, host.pending_minutes) == (10, 5)
    run_for(host, chat, 10 * 60)  # now 1x
    assert (host.karma, host.pending_minutes) == (10, 15)


def test_short_jobs_add_up_instead_of_counting_nothing(chat):
    host = island(karma=10)
    for _ in range(3):
        run_for(host, chat, 25)
    assert (host.pending_minutes, host.pending_seconds, host.jobs_completed) == (1, 15, 3)
    assert history(host) == [("job_completed", 0, 1, 10, 1)]  # only the job that made a minute


def test_a_failure_deducts_the_failure_penalty_at_once(chat, settings):
    settings.KARMA_FAILURE_PENALTY = 3
    host = island(karma=5, pending_minutes=20)
    job = run_for(host, chat, 30 * 60, state="failed", error="out of memory")
    assert (host.karma, host.pending_minutes, host.jobs_failed, host.jobs_completed) == (
        2,
        20,
        1,
        0,
    )
    assert history(host) == [("job_failed", -3, 0, 2, 20)]
    assert KarmaEvent.objects.get(island=host).job_id == job.pk


def test_a_timeout_deducts_the_timeout_penalty(chat, settings):
    settings.KARMA_TIMEOUT_PENALTY = 4
    host = island(karma=1)
    run_for(host, chat, 10, state="failed", error="timeout: time limit reached")
    assert (host.karma, host.jobs_failed) == (-3, 1)
    assert history(host) == [("job_timeout", -4, 0, -3, 0)]


def test_a_timeout_found_by_the_sweep_deducts_the_timeout_penalty(chat, settings):
    settings.KARMA_TIMEOUT_PENALTY = 2
    host = island(karma=5)
    job = running_job(chat, host, deadline_at=timezone.now() - timedelta(seconds=1))
    assert sweep.sweep_jobs()["timed_out"] == 1
    host.refresh_from_db()
    assert history(host) == [("job_timeout", -2, 0, 3, 0)]
    assert KarmaEvent.objects.get(island=host).job_id == job.pk


def test_a_zero_penalty_counts_the_failure_without_a_karma_event(chat, settings):
    settings.KARMA_FAILURE_PENALTY = 0
    host = island(karma=5)
    run_for(host, chat, 10, state="failed", error="boom")
    assert (host.karma, host.jobs_failed, history(host)) == (5, 1, [])


def test_a_cancelled_job_costs_the_island_no_karma(chat):
    host = island(karma=5)
    run_for(host, chat, 600, state="cancelled")
    assert (host.karma, host.pending_minutes, host.jobs_failed, history(host)) == (5, 0, 0, [])


def test_duplicate_and_late_events_count_a_job_once(chat, settings):
    settings.KARMA_FAILURE_PENALTY = 1
    host = island(karma=10)
    job = run_for(host, chat, 61 * 60)
    for state in ("succeeded", "failed", "succeeded", "started"):
        payload = {"job_id": str(job.pk), "state": state, "timestamp": 1, "error": "late"}
        assert handlers.on_status(str(host.pk), payload) is False
    host.refresh_from_db()
    assert (host.karma, host.pending_minutes, host.jobs_completed, host.jobs_failed) == (
        11, 1, 1, 0
    )  # fmt: skip
    assert len(history(host)) == 1


@pytest.mark.django_db(transaction=True)
def test_workers_applying_the_same_completion_at_once_count_it_once(chat):
    host = island(karma=10)
    started = timezone.now() - timedelta(minutes=90)
    job = running_job(chat, host, started_at=started, assigned_at=started)
    payload = {"job_id": str(job.pk), "state": "succeeded", "timestamp": 1}
    results = at_once(6, lambda _: handlers.on_status(str(host.pk), payload))
    assert sorted(results) == [False] * 5 + [True]
    host.refresh_from_db()
    assert (host.karma, host.pending_minutes, host.jobs_completed) == (11, 30, 1)
    assert KarmaEvent.objects.filter(island=host).count() == 1


def test_the_karma_history_api_explains_the_score_exactly(api, user, chat, settings):
    settings.KARMA_FAILURE_PENALTY = 2
    host = island(owner=user)
    run_for(host, chat, 40 * 60)  # +1 (60 pending at 1.5x)
    run_for(host, chat, 30, state="failed", error="boom")  # -2
    run_for(host, chat, 20 * 60)  # 30 pending
    karma.change_karma(island_id=host.pk, delta=-1, reason="disconnection")
    host.refresh_from_db()

    rows = api.get(f"/api/v1/hosts/{host.pk}/karma/history").json()["data"]

    assert [(r["reason"], r["delta"], r["minutes"]) for r in reversed(rows)] == [
        ("job_completed", 1, 60), ("job_failed", -2, 0), ("job_completed", 0, 30),
        ("disconnection", -1, 0),
    ]  # fmt: skip
    assert sum(r["delta"] for r in rows) == host.karma == -2
    assert rows[0]["pending_minutes_after"] == host.pending_minutes == 30
    body = api.get(f"/api/v1/hosts/{host.pk}/karma").json()["data"]
    assert (body["karma_score"], body["pending_minutes"]) == (-2, 30)


def test_higher_karma_wins_the_job_between_otherwise_equal_islands(
    chat, django_capture_on_commit_callbacks
):
    island(karma=0)
    veteran = island(karma=80)
    island(karma=20)
    with django_capture_on_commit_callbacks(execute=True):
        job = tx.sync(
            submission.submit_job,
            user=UserFactory(credits=1),
            workload=chat.slug,
            job_input={"prompt": "Hi"},
        )
    job.refresh_from_db()
    assert job.island_id == veteran.pk


@pytest.mark.django_db(transaction=True)
def test_jobs_of_one_island_ending_at_once_all_count(chat):
    """Each end writes the Island's counters from its row read under the row's lock: no
    end may overwrite another's."""
    host = island(karma=10)
    started = timezone.now() - timedelta(minutes=90)
    jobs = [running_job(chat, host, started_at=started, assigned_at=started) for _ in range(6)]

    def end(i: int) -> bool:
        payload = {"job_id": str(jobs[i].pk), "state": "succeeded", "timestamp": 1}
        return handlers.on_status(str(host.pk), payload)

    results = at_once(len(jobs), end)
    assert results == [True] * len(jobs)
    host.refresh_from_db()
    earned = sum(split_fee(Job.objects.get(pk=job.pk).credits_used)[0] for job in jobs)
    assert (host.jobs_completed, host.earnings) == (len(jobs), earned)
    assert earned > 0
    assert KarmaEvent.objects.filter(island=host).count() == len(jobs)
