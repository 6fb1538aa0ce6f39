"""Ending a job (succeeded, failed, cancelled, timed out): its money, its Island's
counters and karma, its last events, in the caller's transaction and exactly once."""

import uuid
from datetime import datetime
from decimal import Decimal
from functools import lru_cache, partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing import settlement as ledger
from compute import signals
from compute.models import Cargo, Island, Job
from compute.services import karma, settlement
from compute.services.lifecycle import (
    METERED,
    TRANSITIONS,
    S,
    event_token,
    job_finished,
    transition,
    usage_of,
)
from compute.services.publish import client_event, publish_cancel, publish_job_events
from core import metrics, tx
from core.prepared import Prepared
from portal.keys import usage as key_usage

# Run for every job's end and for most Island messages: built once (core.prepared).
_locked = Prepared(lambda job: Job.objects.filter(pk=job), lock=True, job=uuid.UUID)
_locked_on = Prepared(
    lambda job, island: Job.objects.filter(pk=job, island_id=island),
    lock=True,
    job=uuid.UUID,
    island=uuid.UUID,
)


def _flush_pending(job: Job) -> list[tuple[int, str]]:
    """Chunks still waiting for a gap that will never fill, in seq order."""
    tail = sorted((int(seq), text) for seq, text in (job.pending_chunks or {}).items())
    job.pending_chunks = {}
    if tail:
        job.output += "".join(text for _, text in tail)
        job.token_chunks += sum(1 for _, text in tail if text)
        job.last_seq = tail[-1][0]
    return tail


def finish(
    *,
    job_id: uuid.UUID | str,
    event: str,
    island_id: uuid.UUID | str | None = None,
    error: str = "",
    usage: dict | None = None,
    result: dict | None = None,
    notify: bool = False,
) -> bool:
    """End a job (``succeed``, ``fail``, ``cancel``, ``time_out``, ``expire``); ``True``
    if this call ended it. ``island_id``: only if the job is on that Island. ``notify``: tell the
    Island to stop (``host.{id}.cancel``) once committed."""
    with transaction.atomic():
        if island_id is None:
            job = _locked.first(job=job_id)
        else:
            job = _locked_on.first(job=job_id, island=island_id)
        if job is None or job.status not in TRANSITIONS[event][0]:
            return False
        _end(job, event, error=error, usage=usage or {}, result=result)
        if notify and job.island_id:
            transaction.on_commit(lambda: publish_cancel(job.island_id, job.pk))
        if job.island_id:  # a slot is free on its Island: queued jobs may take it now
            transaction.on_commit(partial(signals.slot_freed.send, sender=Job), robust=True)
    return True


def _end(job: Job, event: str, *, error: str, usage: dict, result: dict | None = None) -> None:
    """Apply ``event`` to the locked ``job``: its money, its Island's counters and karma,
    then publish its last events; all in the caller's transaction, so a job is ended,
    settled and counted together or not at all (and only once: the caller holds the
    job's row lock and checked that ``event`` applies)."""

    now = timezone.now()
    attempt, tail = job.attempts, _flush_pending(job)
    changes: dict[str, Any] = {
        "completed_at": now,
        "output": job.output,
        "last_seq": job.last_seq,
        "token_chunks": job.token_chunks,
        "pending_chunks": {},
        "lease_expires_at": None,
        "error": error[:2000],
    }
    # Lock order of a job's end: the job (held), its Island, then the balances.
    island = None
    if job.island_id and event in ("succeed", "fail", "time_out"):
        island = karma.lock_island(job.island_id)
    earned = Decimal(0)
    if event == "succeed":
        changes["prompt_tokens"] = _count(usage.get("prompt_tokens"))
        # An Island that reports no usage (upstream agents on NATS) sends one output chunk
        # per token: counted, as /chat/completions counts them.
        reported = _count(usage.get("completion_tokens"))
        changes["completion_tokens"] = job.token_chunks if reported is None else reported
        metered = {key: _count(usage.get(key)) for key in METERED}
        changes["metered"] = {key: value for key, value in metered.items() if value is not None}
        changes["result"] = result
        # Charge, refund the rest of the hold and pay the owner, in this transaction.
        settled = settlement.settle_job(job, owner_id=island.owner_id if island else None)
        changes["credits_used"], earned = settled.charged, settled.earned
    else:
        ledger.release(user_id=job.user_id, job_id=job.pk)
        changes["credits_used"] = Decimal(0)
    tx.sync(transition, job.pk, event, **changes)
    for name, value in changes.items():
        setattr(job, name, value)
    if job.api_key_id:  # the key's usage: its hold ends, its cost and tokens count
        tokens = (job.prompt_tokens or 0) + (job.completion_tokens or 0)
        key_usage.record_end(key_id=job.api_key_id, created_at=job.created_at,
                             budget=job.budget, charged=job.credits_used, tokens=tokens)  # fmt: skip
    job.status = TRANSITIONS[event][1]
    if island is not None:
        _count_on_island(job, event, island, earned, ended=now)
    events = [event_token(job.pk, attempt, seq, text) for seq, text in tail]
    events.append(client_event(job.pk, f"s:{job.status}", "status", state=job.status))
    if job.status == S.COMPLETED:
        usage_out = {k: v for k, v in usage_of(job).items() if k != "credits_used"}
        events.append(client_event(job.pk, "done", "done", usage=usage_out))
    else:
        events.append(client_event(job.pk, "error", "error", error=job.error or job.status))
    publish_job_events(job.pk, events)
    job_id, status = job.pk, job.status
    transaction.on_commit(
        lambda: job_finished.send_robust(sender=Job, job_id=job_id, status=status)
    )
    transaction.on_commit(partial(_count_end, status, job.cargo_id), robust=True)


def _count_end(status: str, cargo_id: int) -> None:
    metrics.JOBS_ENDED.labels(status, cargo_slug(cargo_id)).inc()


@lru_cache(maxsize=1024)
def cargo_slug(cargo_id: int) -> str:
    """A Cargo's slug, for labels (slugs do not change)."""
    return Cargo.objects.filter(pk=cargo_id).values_list("slug", flat=True).first() or "?"


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _count_on_island(
    job: Job, event: str, island: Island, earned: Decimal, *, ended: datetime
) -> None:
    """The Island's counters, earnings and karma, exactly once per job."""

    if event == "succeed":
        started = job.started_at or job.assigned_at or ended
        seconds = int((ended - started).total_seconds())
        karma.record_completed_job(
            island_id=island.pk, job_id=job.pk, seconds=seconds, earned=earned, island=island
        )
    else:
        karma.record_failed_job(
            island_id=island.pk, job_id=job.pk, timed_out=event == "time_out", island=island
        )
