"""Celery tasks of compute: the dispatch pass and the sweep of leases and time limits, the
Islands' upkeep, the market's snapshots and the settlement of jobs whose hold outlived
them (scheduled in settings.CELERY_BEAT_SCHEDULE), and the ingestion of what Islands
report (records collected by the bridge: compute.handlers, compute.job_events).

Ingestion tasks ack the JetStream messages only after their records are committed. Tasks
keep the names they had before they moved here (``compute.job_tasks.*``, ``sail.tasks.*``,
``billing.tasks.*``): a message queued by an older process still finds its task.
"""

import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task

from compute.services import dispatch, islands, jobs, karma, market, settlement, sweep
from core import ticks
from core.retry import RETRY
from sail.acks import ack

logger = logging.getLogger(__name__)


@shared_task(name="compute.dispatch_queued", max_retries=0, ignore_result=True)
def dispatch_queued_task(tick: float = 0) -> int:
    """A dispatch pass: asked for by news (no ``tick``), or beat's, once per ``tick``."""
    if not ticks.claim("dispatch", tick):
        return 0
    return dispatch.dispatch_queued()


@shared_task(name="compute.sweep_jobs", max_retries=0, ignore_result=True)
def sweep_jobs_task(tick: float = 0) -> dict[str, int]:
    if not ticks.claim("sweep-jobs", tick):
        return {}
    return sweep.sweep_jobs()


# ``succeeded`` waits (re-queued every OUTPUT_WAIT_SECONDS, at most OUTPUT_WAIT_TRIES
# times) for the job's output, which comes before it but in another task.
OUTPUT_WAIT_SECONDS, OUTPUT_WAIT_TRIES = 0.02, 150


@shared_task(name="compute.job_tasks.ingest_job_status", bind=True, **RETRY)
def ingest_job_status(self, records: list[dict], acks: list[str], waited: int = 0) -> int:
    return _apply_statuses(records, acks, waited, may_wait=_sent(self))


def _sent(task) -> bool:
    """Whether the task came through the broker; run eagerly (tests, scripts) nothing
    else can bring a job's output meanwhile."""
    return not (task.request.called_directly or task.request.is_eager)


def _apply_statuses(records: list[dict], acks: list[str], waited: int, *, may_wait: bool) -> int:
    behind = [
        record
        for record in records
        if record["state"] == "succeeded"
        and not jobs.output_caught_up(host_id=record["host_id"], job_id=record["job_id"])
    ]
    done = sum(jobs.apply_status(**record) for record in records if record not in behind)
    if behind and may_wait and waited < OUTPUT_WAIT_TRIES:
        # The others are applied (applying them again changes nothing); only these wait,
        # sent again as a new message: cheaper than Celery's retry, which builds an
        # exception with its traceback each time (the output is usually a moment behind).
        ingest_job_status.apply_async(
            args=(behind, acks, waited + 1), countdown=OUTPUT_WAIT_SECONDS
        )
        return done
    done += sum(jobs.apply_status(**record) for record in behind)  # waited enough
    ack(acks)
    return done


@shared_task(name="compute.job_tasks.ingest_job_output", **RETRY)
def ingest_job_output(records: list[dict], acks: list[str]) -> int:
    by_host: dict[str, list[dict]] = {}
    for record in records:
        by_host.setdefault(record["host_id"], []).append(record)
    done = sum(jobs.apply_output(host_id=host, chunks=chunks) for host, chunks in by_host.items())
    ack(acks)
    return done


@shared_task(name="compute.job_tasks.ingest_job_progress", **RETRY)
def ingest_job_progress(records: list[dict], acks: list[str]) -> int:
    return _each(jobs.apply_progress, records, acks)


@shared_task(name="compute.job_tasks.ingest_job_images", **RETRY)
def ingest_job_images(records: list[dict], acks: list[str]) -> int:
    return _each(jobs.apply_image, records, acks)


@shared_task(name="compute.job_tasks.ingest_job_leases", **RETRY)
def ingest_job_leases(records: list[dict], acks: list[str]) -> int:
    return _each(jobs.apply_lease, records, acks)


def _each(apply: Callable[..., bool], records: list[dict], acks: list[str]) -> int:
    """``apply`` each record, then ack the messages they came in."""
    done = sum(apply(**record) for record in records)
    ack(acks)
    return done


@shared_task(name="compute.job_tasks.ingest_job_events", bind=True, **RETRY)
def ingest_job_events(self, parts: list[tuple[str, Any, list[str]]]) -> int:
    """A batch holding several kinds of job events, ``(kind, records, acks)`` in the
    order to apply them (compute.handlers): output first, so that a ``succeeded`` of
    the same batch finds it stored. Each part acks its messages once applied."""
    done = 0
    for kind, records, acks in parts:
        if kind == "status":
            done += _apply_statuses(records, acks, 0, may_wait=_sent(self))
        else:
            done += INGEST[kind](records, acks)
    return done


INGEST = {
    "output": ingest_job_output,
    "progress": ingest_job_progress,
    "image": ingest_job_images,
    "lease": ingest_job_leases,
}


# --- the Islands ----------------------------------------------------------------
@shared_task(name="sail.tasks.register_islands", **RETRY)
def register_islands(records: list[dict], acks: list[str]) -> int:
    count = islands.register_islands(records=records)
    ack(acks)
    return count


@shared_task(name="sail.tasks.ingest_heartbeats", **RETRY)
def ingest_heartbeats(records: list[dict] | str, acks: list[str]) -> int:
    count = islands.ingest_heartbeats(records=records)
    ack(acks)
    return count


@shared_task(max_retries=0)
def sweep_liveness(tick: float = 0) -> dict[str, int]:
    """Mark silent Islands offline, then penalize long unannounced disconnections (once
    per ``tick``: core.ticks)."""
    if not ticks.claim("sweep-liveness", tick):
        return {}
    return {
        "offline": islands.mark_stale_offline(),
        "penalized": karma.penalize_disconnections(),
    }


@shared_task(name="billing.tasks.snapshot_market_rates", acks_late=True, max_retries=0)
def snapshot_market_rates(tick: float = 0) -> int:
    """One snapshot per ``tick`` however many beats send it (core.ticks)."""
    if not ticks.claim("market-snapshot", tick):
        return 0
    return market.snapshot_rates()


@shared_task(name="billing.tasks.settle_ended_jobs", acks_late=True, max_retries=0)
def settle_ended_jobs(tick: float = 0) -> int:
    if not ticks.claim("settle-ended-jobs", tick):
        return 0
    fixed = settlement.release_holds_of_ended_jobs()
    if fixed:
        logger.warning("Settled %d job(s) whose hold outlived the job", fixed)
    return fixed
