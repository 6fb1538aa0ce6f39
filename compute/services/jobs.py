"""Jobs: the state machine, submission and cancellation, and what Islands report.

Every status change goes through :func:`transition`, a conditional UPDATE over the
table :data:`TRANSITIONS`: it applies only when the row is still in an allowed source
state (and, for Island reports, still on that Island and attempt), so two workers
handling the same message, or a late message after a final state, never apply twice.
Final states never change: no transition leaves them.

Island messages (status, output, progress, image, lease) lock the job row, apply, and
publish the client events of :mod:`compute.services.publish` before the lock is
released; publishing under the lock is deliberate: it is what keeps the events of one
job in order when several workers handle its messages. A rolled-back transaction that
already published is harmless: the redelivered message publishes the same ``Nats-Msg-Id``
again, which JetStream drops.
"""

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from billing import services as ledger
from compute import signals
from compute.models import Island, Job
from compute.services import karma
from compute.services.publish import client_event, publish_cancel, publish_job_events
from core import tx
from core.errors import ApiError
from core.prepared import Prepared
from core.redis import redis_client
from core.tx import SyncTx, run_sync
from portal.models import User

logger = logging.getLogger(__name__)
S = Job.Status
WAITING = frozenset({S.PENDING, S.QUEUED})
ACTIVE = frozenset({S.PENDING, S.QUEUED, S.RUNNING})
# event -> (source states, target state). The one place that says how a job may move.
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "assign": (WAITING, S.RUNNING),
    "wait": (frozenset({S.PENDING}), S.QUEUED),
    "requeue": (frozenset({S.RUNNING}), S.QUEUED),
    "succeed": (frozenset({S.RUNNING}), S.COMPLETED),
    "fail": (ACTIVE, S.FAILED),
    "cancel": (ACTIVE, S.CANCELLED),
    "time_out": (frozenset({S.RUNNING}), S.TIMEOUT),
    # A job that waited for an Island longer than its queue limit (compute.services.waiting).
    "expire": (WAITING, S.TIMEOUT),
}
MAX_PENDING_CHUNKS = 10_000
# Sent by an Island whose own time limit ended the job (island-protocol.md).
ISLAND_TIMEOUT_PREFIX = "timeout"

# Sent after the commit that made a job final: ``job_id``, ``status``.
job_finished = Signal()


def transition(
    job_id: uuid.UUID | str,
    event: str,
    *,
    on_island: uuid.UUID | str | None = None,
    at_attempt: int | None = None,
    **changes: Any,
) -> bool:
    """Move the job on ``event`` if it is in a source state (and, when given, still on
    ``on_island`` at attempt ``at_attempt``); ``True`` if it moved. ``changes``: fields
    written with the new state."""
    statement = moving(job_id, event, on_island=on_island, at_attempt=at_attempt, **changes)
    return run_sync(SyncTx().one(statement)) == 1


def moving(
    job_id: uuid.UUID | str,
    event: str,
    *,
    on_island: uuid.UUID | str | None = None,
    at_attempt: int | None = None,
    **changes: Any,
) -> tx.Statement:
    """:func:`transition` as a statement, for a transaction of the job path (its result:
    1 if the job moved)."""
    sources, target = TRANSITIONS[event]
    where: dict[str, Any] = {"pk": job_id, "status__in": sources}
    if on_island is not None:
        where["island_id"] = on_island
    if at_attempt is not None:
        where["attempts"] = at_attempt
    return tx.update(Job, where, {"status": target, **changes})


def start_as(job: Job, event: str, **changes: Any) -> None:
    """Apply ``event`` to a job not stored yet: a submission decides the first state of
    its job (assigned or queued) before the insert, by the same table of transitions."""
    sources, target = TRANSITIONS[event]
    if not job._state.adding or job.status not in sources:
        raise ValueError(f"{event} does not apply to this job")
    job.status = target
    for name, value in changes.items():
        setattr(job, name, value)


# --- client events ------------------------------------------------------------------
def usage_of(job: Job) -> dict:
    known = [n for n in (job.prompt_tokens, job.completion_tokens) if n is not None]
    return {
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": job.completion_tokens,
        "total_tokens": sum(known) if known else None,
        # A JSON number as in the seed page; the stored value is an exact decimal with
        # 6 places, which a float's shortest repr reproduces digit for digit.
        "credits_used": float(job.credits_used) if job.credits_used is not None else None,
    }


# --- cancellation (submission: compute.services.submission) -------------------------
def cancel_job(*, user: User, job_id: uuid.UUID | str) -> Job:
    """Cancel the user's pending, queued or running job; 409 if it already ended."""
    job = Job.objects.filter(pk=job_id, user=user).first()
    if job is None:
        raise ApiError("Job not found", code="not_found", status_code=404)
    if not finish(job_id=job.pk, event="cancel", error="Cancelled by the user", notify=True):
        job.refresh_from_db(fields=["status"])
        raise ApiError(
            f"The job already ended ({job.status})",
            code="job_finished",
            status_code=409,
            status=job.status,
        )
    job.refresh_from_db()
    return job


# --- ending a job -------------------------------------------------------------------
def _flush_pending(job: Job) -> list[tuple[int, str]]:
    """Chunks still waiting for a gap that will never fill, in seq order."""
    tail = sorted((int(seq), text) for seq, text in (job.pending_chunks or {}).items())
    job.pending_chunks = {}
    if tail:
        job.output += "".join(text for _, text in tail)
        job.last_seq = tail[-1][0]
    return tail


def finish(
    *,
    job_id: uuid.UUID | str,
    event: str,
    island_id: uuid.UUID | str | None = None,
    error: str = "",
    usage: dict | None = None,
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
        _end(job, event, error=error, usage=usage or {})
        if notify and job.island_id:
            transaction.on_commit(lambda: publish_cancel(job.island_id, job.pk))
        if job.island_id:  # a slot is free on its Island: queued jobs may take it now
            transaction.on_commit(partial(signals.slot_freed.send, sender=Job), robust=True)
    return True


def _end(job: Job, event: str, *, error: str, usage: dict) -> None:
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
        changes["completion_tokens"] = _count(usage.get("completion_tokens"))
        # Charge, refund the rest of the hold and pay the owner, in this transaction.
        settlement = ledger.settle_job(job, owner_id=island.owner_id if island else None)
        changes["credits_used"], earned = settlement.charged, settlement.earned
    else:
        ledger.release(user_id=job.user_id, job_id=job.pk)
        changes["credits_used"] = Decimal(0)
    transition(job.pk, event, **changes)
    for name, value in changes.items():
        setattr(job, name, value)
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


def event_token(job_id: object, attempt: int, seq: int, text: str) -> tuple[str, dict]:
    return client_event(job_id, f"{attempt}:t:{seq}", "token", content=text, seq=seq)


# Run for every job's end and for most Island messages: built once (core.prepared).
_locked = Prepared(lambda job: Job.objects.filter(pk=job), lock=True, job=uuid.UUID)
_locked_on = Prepared(
    lambda job, island: Job.objects.filter(pk=job, island_id=island),
    lock=True,
    job=uuid.UUID,
    island=uuid.UUID,
)
_output_of = Prepared(
    lambda job, island: Job.objects.filter(pk=job, island_id=island, status=S.RUNNING).only(
        "id", "output", "last_seq", "pending_chunks", "attempts"
    ),
    lock=True,
    job=uuid.UUID,
    island=uuid.UUID,
)
_running = Prepared(
    lambda job, island: Job.objects.filter(pk=job, island_id=island, status=S.RUNNING).values_list(
        "attempts", "last_seq"
    ),
    job=uuid.UUID,
    island=uuid.UUID,
)


# --- what Islands report ------------------------------------------------------------
def _owned(job_id: str, host_id: str) -> dict | None:
    """The job's attempt and last stored chunk if it is running on ``host_id``;
    ``None`` ignores the message."""
    row = _running.first(job=job_id, island=host_id)
    return None if row is None else {"attempts": row[0], "last_seq": row[1]}


def apply_status(
    *, host_id: str, job_id: str, state: str, error: str = "", usage: dict | None = None
) -> bool:
    """``host.{id}.status``; ``True`` if it changed something."""
    if state in ("started", "streaming"):
        # One round trip: the job's attempt if it runs there, and its start if first.
        where = {"pk": job_id, "island_id": host_id, "status": S.RUNNING}
        found, first = run_sync(SyncTx().run(
            tx.query(_running, job=job_id, island=host_id),
            tx.update(Job, {**where, "started_at__isnull": True}, {"started_at": timezone.now()}),
        ))  # fmt: skip
        if not found:
            return False
        key = f"{found[0][0]}:s:{state}"
        publish_job_events(
            job_id, [client_event(job_id, key, "status", state="running", phase=state)]
        )
        return bool(first)
    if state == "succeeded":
        return finish(job_id=job_id, event="succeed", island_id=host_id, usage=usage)
    if state == "failed":
        timed_out = error.strip().lower().startswith(ISLAND_TIMEOUT_PREFIX)
        return finish(
            job_id=job_id,
            event="time_out" if timed_out else "fail",
            island_id=host_id,
            error=error or "The Island reported a failure",
        )
    if state == "cancelled":
        return finish(
            job_id=job_id, event="cancel", island_id=host_id, error="Cancelled on the Island"
        )
    return False


def merge_chunks(job: Job, chunks: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Add ``(seq, chunk)`` pairs to the job; returns those now appended to ``output``, in
    seq order. A seq already applied or already waiting is a duplicate; one beyond a gap
    waits in ``pending_chunks`` until the gap fills."""
    pending = dict(job.pending_chunks or {})
    for seq, text in chunks:
        if seq > job.last_seq and str(seq) not in pending and len(pending) < MAX_PENDING_CHUNKS:
            pending[str(seq)] = text
    appended = []
    while (text := pending.pop(str(job.last_seq + 1), None)) is not None:
        job.last_seq += 1
        appended.append((job.last_seq, text))
    job.output += "".join(text for _, text in appended)
    job.pending_chunks = pending
    return appended


def apply_output(*, host_id: str, chunks: list[dict]) -> int:
    """A batch of ``host.{id}.output`` messages ``{job_id, seq, chunk}`` of one Island,
    in one transaction; returns how many chunks were appended."""
    by_job: dict[str, list[tuple[int, str]]] = {}
    final: dict[str, int] = {}
    for chunk in chunks:
        by_job.setdefault(str(chunk["job_id"]), []).append((chunk["seq"], chunk["chunk"]))
        if chunk.get("is_final"):
            final[str(chunk["job_id"])] = chunk["seq"]
    appended_total = 0
    with transaction.atomic():
        # Locked in primary-key order, in one round trip.
        found = run_sync(SyncTx().run(*(
            tx.query(_output_of, job=job_id, island=host_id) for job_id in sorted(by_job, key=uuid.UUID)
        )))  # fmt: skip
        jobs = [rows[0] for rows in found if rows]
        changed = []
        for job in jobs:
            before = (job.last_seq, len(job.pending_chunks or {}))
            appended = merge_chunks(job, by_job[str(job.pk)])
            if (job.last_seq, len(job.pending_chunks)) != before:
                changed.append(job)
            appended_total += len(appended)
            if appended:
                publish_job_events(
                    job.pk, [event_token(job.pk, job.attempts, s, t) for s, t in appended]
                )
            if (seq := final.get(str(job.pk))) is not None:
                key = _final_key(job.pk, job.attempts)
                transaction.on_commit(partial(_note_final, key, seq), robust=True)
        if changed:  # one round trip, prepared statements (a bulk_update's CASE is not)
            fields = ("output", "last_seq", "pending_chunks")
            run_sync(SyncTx().run(*(
                tx.update(Job, {"pk": job.pk}, {name: getattr(job, name) for name in fields})
                for job in changed
            )))  # fmt: skip
    return appended_total


# The seq of the final output chunk (``is_final``) of a job's attempt, kept in Redis for
# :func:`output_caught_up`: an Island sends it before ``succeeded``, but the two travel
# in different tasks, which workers may run in either order.
FINAL_SEQ_SECONDS = 3600


def _final_key(job_id: object, attempt: int) -> str:
    return f"jobs:final-seq:{job_id}:{attempt}"


def _note_final(key: str, seq: int) -> None:
    redis_client().set(key, seq, ex=FINAL_SEQ_SECONDS)


def output_caught_up(*, host_id: str, job_id: str) -> bool:
    """Whether all the output of the job's running attempt on ``host_id`` is stored (its
    final chunk and every chunk before it), so that ``succeeded`` may end it. True too
    when there is nothing to wait for (the job is not running there)."""

    row = _owned(job_id, host_id)
    if row is None:
        return True
    final = redis_client().get(_final_key(job_id, row["attempts"]))
    return final is not None and row["last_seq"] >= int(final)


def apply_progress(*, host_id: str, job_id: str, step: int, total: int) -> bool:
    owned = _owned(job_id, host_id)
    if owned is None:
        return False
    key = f"{owned['attempts']}:p:{step}"
    publish_job_events(job_id, [client_event(job_id, key, "progress", step=step, total=total)])
    return True


def apply_image(*, host_id: str, job_id: str, image: dict) -> bool:
    """``host.{id}.image``: kept on the job (``images``) and sent to clients."""
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(no_key=True)
            .filter(pk=job_id, island_id=host_id, status=S.RUNNING)
            .only("id", "images", "attempts")
            .first()
        )
        if job is None:
            return False
        job.images = [*job.images, image]
        job.save(update_fields=["images"])
        key = f"{job.attempts}:i:{len(job.images)}"
        publish_job_events(job.pk, [client_event(job.pk, key, "image", **image)])
    return True


def apply_lease(*, host_id: str, job_id: str, extend_seconds: float) -> bool:
    """``host.{id}.lease``: the job's lease now ends ``extend_seconds`` from now (capped);
    a lease never shrinks."""
    seconds = max(0.0, min(float(extend_seconds), settings.JOB_MAX_LEASE_EXTENSION_SECONDS))
    until = timezone.now() + timedelta(seconds=seconds)
    jobs = Job.objects.filter(pk=job_id, island_id=host_id, status=S.RUNNING)
    return (
        bool(jobs.filter(lease_expires_at__lt=until).update(lease_expires_at=until))
        or jobs.exists()
    )


def duration_ms(job: Job) -> int | None:
    start: datetime | None = job.started_at or job.assigned_at
    if not (start and job.completed_at):
        return None
    return max(0, int((job.completed_at - start).total_seconds() * 1000))


def money(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None
