"""Assignments on their way to Islands, until the Island acknowledges them.

A job assigned to an Island is ``running`` for clients from its assignment (the
protocol's mapping: assigned, ``started`` and ``streaming`` are all ``running``), but
the coordinator counts it as received only once the Island reports ``started`` (or sends
its output). An assignment can be lost on the way without the Island being at fault:
published while NATS restarts, or sent on core NATS (field Islands) while the Island's
connection was down. So an assignment not acknowledged within
``JOB_ACK_TIMEOUT_SECONDS`` is offered again, to the same Island while that Island
heartbeats (the Sail lost it, not the Island), as the same attempt: it costs no attempt,
no karma and no second hold, and an Island that did get the first copy ignores the
second (agents drop a job they already took, JetStream drops the same ``Nats-Msg-Id``).
Once the Island acknowledges, the job's lease starts afresh.

Where the Island is at fault, the jobs' sweep (compute.services.sweep.sweep_jobs)
moves the job to another Island as before: its heartbeats stopped, or its lease (the
time it had to take the job) ran out with every offer unanswered.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from compute.models import Island, Job
from compute.selectors.islands import offline_cutoff
from compute.services.publish import Assignment, Outbox, assignment_payload
from core import metrics

logger = logging.getLogger(__name__)


def undelivered(items: list[Assignment]) -> None:
    """Assignments that could not be published (their jobs were committed as assigned):
    they stay with their Island, unacknowledged, and are offered again with the others
    (:func:`reoffer_unacknowledged`) once the Sail is back."""
    for item in items:
        metrics.DISPATCH_FAILURES.inc()
        logger.warning("could not publish job %s to %s; it will be offered again",
                       item.job_id, item.island_id)  # fmt: skip


def unacknowledged(now: datetime) -> Any:
    """Running jobs whose Island has not acknowledged them for ``JOB_ACK_TIMEOUT_SECONDS``
    (no ``started``, no output), on Islands that still heartbeat, within their lease."""
    overdue = now - timedelta(seconds=settings.JOB_ACK_TIMEOUT_SECONDS)
    return Job.objects.filter(
        status=Job.Status.RUNNING,
        started_at__isnull=True,
        last_seq=0,
        assigned_at__lt=overdue,
        lease_expires_at__gt=now,
        island__status=Island.Status.ONLINE,
        island__last_heartbeat_at__gte=offline_cutoff(now),
    )


def reoffer_unacknowledged(*, now: datetime | None = None) -> int:
    """Publish again, to the same Island and as the same attempt, every assignment not
    acknowledged in time (see the module); returns how many were offered again."""
    now = now or timezone.now()
    jobs = list(unacknowledged(now).select_related("cargo", "island"))
    outbox = Outbox()
    for job in jobs:
        # Only if nothing moved meanwhile (an acknowledgement, an end, another offer).
        offered = Job.objects.filter(
            pk=job.pk,
            status=Job.Status.RUNNING,
            island_id=job.island_id,
            attempts=job.attempts,
            started_at__isnull=True,
            assigned_at=job.assigned_at,
        ).update(assigned_at=now)
        if not offered:
            continue
        lease_ms = int(job.lease_expires_at.timestamp() * 1000)  # type: ignore[union-attr]
        island = job.island
        assert island is not None
        outbox.add(
            Assignment(
                job_id=job.pk,
                island_id=str(island.pk),
                attempt=job.attempts,
                payload=assignment_payload(job, lease_ms=lease_ms),
                island_name=island.name,
                field=island.nkey is None,
            )
        )
    offered = len(outbox.items)
    if offered:
        logger.warning("offering %d unacknowledged assignments again", offered)
        undelivered(outbox.send())
    return offered
