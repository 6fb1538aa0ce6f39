"""The sweep of running and waiting jobs (beat, every few seconds: compute.tasks): jobs
over their Cargo's time limit end, jobs whose lease ran out or whose Island went silent go
back to the queue for another Island (compute.services.dispatch.requeue_job), jobs that
waited for an Island longer than their queue limit end, and the assignments their
Islands did not acknowledge in time are offered again (compute.services.delivery)."""

from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from compute.models import Island, Job
from compute.selectors.islands import offline_cutoff
from compute.services import batches, delivery, waiting
from compute.services.dispatch import requeue_job
from compute.services.ending import finish
from compute.services.lifecycle import S


def sweep_jobs(*, now: datetime | None = None) -> dict[str, int]:
    """Time out jobs over their limit, requeue jobs of silent Islands and expired leases,
    end jobs that waited for an Island longer than their queue limit."""
    now = now or timezone.now()
    running = Job.objects.filter(status=S.RUNNING)
    timed_out = sum(
        finish(job_id=job_id, event="time_out", error=f"Timeout: job exceeded {limit}s limit", notify=True)
        for job_id, limit in running.filter(deadline_at__lt=now).values_list("pk", "cargo__time_limit_seconds")
    )  # fmt: skip
    silent = list(
        running.filter(
            Q(island__last_heartbeat_at__lt=offline_cutoff(now))
            | Q(island__status=Island.Status.OFFLINE)
        ).values_list("pk", "island_id")
    )
    offline = sum(
        requeue_job(job_id=j, island_id=i, reason="the Island went offline") for j, i in silent
    )
    expired = list(running.filter(lease_expires_at__lt=now).values_list("pk", "island_id"))
    leases = sum(requeue_job(job_id=j, island_id=i, reason="lease expired") for j, i in expired)
    return {
        "batches_ended": batches.end_stale_parents(),
        "timed_out": timed_out,
        "offline": offline,
        "lease_expired": leases,
        "offered_again": delivery.reoffer_unacknowledged(now=now),
        "queue_expired": waiting.expire_waiting(now=now),
    }
