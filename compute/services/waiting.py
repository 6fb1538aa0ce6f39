"""Jobs that wait for an Island: why they wait, what their clients are told, and the end
of a wait that lasts too long.

- **Why.** Placement's own filters say it (placement.IslandIndex.waiting_reason): no
  online Island can run the Cargo, the ones that can ask more than the job's budget, or
  they are all busy. Whoever queues a job decides it (its submission, a dispatch pass, a
  requeue) and stores it on the job (``queue_reason``); a pass that finds it changed
  stores it again and publishes a ``status`` event ``{state: "queued", reason, message,
  timeout_seconds, expires_at}``. Every door reads it from there: the job API
  (``queue``), the job stream and chat completions (a waiting job's feed starts with its
  row's status: compute.feed), hence the CLI and the Chat page.
- **How long.** A job waits at most ``queue_timeout_seconds`` (its submission's, else
  ``JOB_QUEUE_TIMEOUT_SECONDS``) from the time it was queued, counted again after a
  requeue. The sweep (:func:`expire_waiting`, beat) then ends it ``timeout`` with an error
  that says why; compute.services.ending.finish releases its hold, once: under the job's
  row lock, and only from a waiting state.
"""

import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute.models import Cargo, Job
from compute.selectors.market import ask_overrides
from compute.services import placement
from compute.services.ending import finish
from compute.services.lifecycle import WAITING, S
from compute.services.publish import client_event, publish_job_events

logger = logging.getLogger(__name__)
Reason = Job.QueueReason
WAITING_FOR_AN_ISLAND = "waiting for an Island"


def limit(seconds: int | None, *, since: datetime) -> dict[str, Any]:
    """The fields of a wait that starts ``since``: ``seconds`` long (None: the default)."""
    seconds = seconds or settings.JOB_QUEUE_TIMEOUT_SECONDS
    return {
        "queue_timeout_seconds": seconds,
        "queue_deadline_at": since + timedelta(seconds=seconds),
    }


def message(reason: str) -> str:
    """What clients are told of ``reason`` (a ``Job.QueueReason``, or blank: not known)."""
    return Reason(reason).label if reason in Reason.values else WAITING_FOR_AN_ISLAND


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def queue_of(job: Job) -> dict[str, Any] | None:
    """Why ``job`` waits and until when (the job API's ``queue``); None unless it waits."""
    if job.status not in WAITING:
        return None
    return {
        "reason": job.queue_reason or None,
        "message": message(job.queue_reason),
        "timeout_seconds": job.queue_timeout_seconds,
        "expires_at": _iso(job.queue_deadline_at),
    }


def queued_event(job: Job, *, key: str | None = None, **extra: Any) -> tuple[str, dict]:
    """The ``status`` event of a waiting job. ``key``: its message id within the job's
    (by default one of its own: the same reason may come back later, and must be told)."""
    key = key or f"{job.attempts}:q:{job.queue_reason}:{time.time_ns()}"
    fields = {k: v for k, v in (queue_of(job) or {}).items() if v is not None}
    return client_event(job.pk, key, "status", state=S.QUEUED, **fields, **extra)


# --- keeping the reasons true -------------------------------------------------------------
def note_reason(job_ids: Iterable[uuid.UUID], reason: str) -> int:
    """Store ``reason`` on those of these jobs still queued for another one and tell their
    clients, under the rows' locks (which keep a job's events in order: see
    compute.services.jobs); returns how many changed."""
    with transaction.atomic():
        jobs = list(
            Job.objects.select_for_update(no_key=True)
            .filter(pk__in=list(job_ids), status=S.QUEUED)
            .exclude(queue_reason=reason)
            .order_by("pk")
            .only("id", "status", "attempts", "queue_timeout_seconds", "queue_deadline_at")
        )
        if not jobs:
            return 0
        Job.objects.filter(pk__in=[job.pk for job in jobs]).update(queue_reason=reason)
        for job in jobs:
            job.queue_reason = reason
            publish_job_events(job.pk, [queued_event(job)])
    return len(jobs)


def explain(job_ids: list[uuid.UUID]) -> int:
    """Bring the reasons of these queued jobs up to date: those a dispatch pass did not
    try, since a job of their Cargo found no Island before them. One decision per
    distinct need; returns how many changed."""

    jobs = (
        Job.objects.filter(pk__in=job_ids, status=S.QUEUED)
        .select_related("cargo")
        .defer("input", "output", "pending_chunks", "images")
    )
    index, asks = placement.index(), {}
    index.maybe_refresh()
    reasons: dict[placement.Need, str] = {}
    changed: dict[str, list[uuid.UUID]] = defaultdict(list)
    for job in jobs:
        if job.cargo_id not in asks:
            asks[job.cargo_id] = ask_overrides(job.cargo)
        need = placement.Need.for_job(job, asks=asks[job.cargo_id])
        if need not in reasons:
            reasons[need] = index.waiting_reason(need)
        if reasons[need] != job.queue_reason:
            changed[reasons[need]].append(job.pk)
    return sum(note_reason(ids, reason) for reason, ids in changed.items())


def unservable(cargos: Iterable[Cargo]) -> set[str]:
    """The slugs of those ``cargos`` that no online Island can run now, at any price."""
    index = placement.index()
    index.maybe_refresh()

    def need(cargo: Cargo) -> placement.Need:
        return placement.Need.of(cargo, budget=math.inf, region="", excluded=(), asks={})

    return {c.slug for c in cargos if index.waiting_reason(need(c)) == Reason.NO_ISLAND}


# --- the end of a wait ------------------------------------------------------------------
def expiry_error(seconds: int | None, reason: str) -> str:
    waited = f"within {seconds} s" if seconds else "in time"
    return f"No Island took the job {waited}: {message(reason)}"


def expire_waiting(*, now: datetime | None = None) -> int:
    """End the jobs that waited past their limit (``timeout``, their holds released, their
    clients told why); returns how many ended."""
    overdue = Job.objects.filter(
        status__in=WAITING, queue_deadline_at__lt=now or timezone.now()
    ).values_list("pk", "queue_timeout_seconds", "queue_reason")
    ended = sum(
        finish(job_id=pk, event="expire", error=expiry_error(seconds, reason))
        for pk, seconds, reason in overdue
    )
    if ended:
        logger.info("%d jobs waited past their queue limit", ended)
    return ended
