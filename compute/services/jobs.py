"""Jobs: cancellation and what Islands report (the states: compute.services.lifecycle;
a job's end: compute.services.ending).

Every statement goes through core.tx (prepared, several in one round trip), on Django's
connection of the calling thread (:func:`_run`).

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

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute.models import Job
from compute.services.ending import finish
from compute.services.lifecycle import (
    S,
    event_token,
)
from compute.services.publish import client_event, publish_job_events
from core import metrics, tx
from core.errors import ApiError
from core.prepared import Prepared
from core.redis import redis_client
from portal.models import User

logger = logging.getLogger(__name__)
MAX_PENDING_CHUNKS = 10_000
# Sent by an Island whose own time limit ended the job (island-protocol.md).
ISLAND_TIMEOUT_PREFIX = "timeout"


# --- cancellation (submission: compute.services.submission) -------------------------
def cancel_job(*, user: User, job_id: uuid.UUID | str) -> Job:
    """Cancel the user's pending, queued or running job; 409 if it already ended."""
    [found] = _run(tx.query(_own_job, job=job_id, user=user.pk))
    if not found:
        raise ApiError("Job not found", code="not_found", status_code=404)
    if not finish(job_id=found[0].pk, event="cancel", error="Cancelled by the user", notify=True):
        [[job]] = _run(tx.query(_own_job, job=job_id, user=user.pk))
        raise ApiError(
            f"The job already ended ({job.status})",
            code="job_finished",
            status_code=409,
            status=job.status,
        )
    [[job]] = _run(tx.query(_own_job, job=job_id, user=user.pk))
    return job


def _run(*statements: tx.Statement) -> list:
    """The statements' results, on Django's connection (one round trip)."""
    return tx.sync(lambda db: db.run(*statements))


# Built once (core.prepared); the last two run for most Island messages.
_own_job = Prepared(
    lambda job, user: Job.objects.filter(pk=job, user_id=user), job=uuid.UUID, user=uuid.UUID
)
_images_of = Prepared(
    lambda job, island: Job.objects.filter(pk=job, island_id=island, status=S.RUNNING).values_list(
        "images", "attempts"
    ),
    lock=True,
    job=uuid.UUID,
    island=uuid.UUID,
)
_output_of = Prepared(
    lambda job, island: Job.objects.filter(pk=job, island_id=island, status=S.RUNNING).only(
        "id", "output", "last_seq", "pending_chunks", "token_chunks", "attempts", "created_at"
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
    [rows] = _run(tx.query(_running, job=job_id, island=host_id))
    return {"attempts": rows[0][0], "last_seq": rows[0][1]} if rows else None


def apply_status(
    *,
    host_id: str,
    job_id: str,
    state: str,
    error: str = "",
    usage: dict | None = None,
    result: dict | None = None,
) -> bool:
    """``host.{id}.status``; ``True`` if it changed something."""
    if state in ("started", "streaming"):
        # One round trip: the job's attempt if it runs there, and its start if first: the
        # Island acknowledged the assignment (compute.services.delivery), and its lease
        # starts afresh (its delivery may have taken a few offers).
        where = {"pk": job_id, "island_id": host_id, "status": S.RUNNING}
        now = timezone.now()
        lease = now + timedelta(seconds=settings.JOB_LEASE_SECONDS)
        found, first = _run(
            tx.query(_running, job=job_id, island=host_id),
            tx.update(Job, {**where, "started_at__isnull": True},
                      {"started_at": now, "lease_expires_at": lease}),
        )  # fmt: skip
        if not found:
            return False
        key = f"{found[0][0]}:s:{state}"
        publish_job_events(
            job_id, [client_event(job_id, key, "status", state="running", phase=state)]
        )
        return bool(first)
    if state == "succeeded":
        return finish(job_id=job_id, event="succeed", island_id=host_id, usage=usage, result=result)
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
    job.token_chunks += sum(1 for _, text in appended if text)
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
        found = _run(*(
            tx.query(_output_of, job=job_id, island=host_id) for job_id in sorted(by_job, key=uuid.UUID)
        ))  # fmt: skip
        jobs = [rows[0] for rows in found if rows]
        changed = []
        for job in jobs:
            before = (job.last_seq, len(job.pending_chunks or {}))
            appended = merge_chunks(job, by_job[str(job.pk)])
            if (job.last_seq, len(job.pending_chunks)) != before:
                changed.append(job)
            appended_total += len(appended)
            if before[0] == 0 and job.last_seq > 0:  # its first token
                transaction.on_commit(partial(metrics.first_token, job.created_at), robust=True)
            if appended:
                publish_job_events(
                    job.pk, [event_token(job.pk, job.attempts, s, t) for s, t in appended]
                )
            if (seq := final.get(str(job.pk))) is not None:
                key = _final_key(job.pk, job.attempts)
                transaction.on_commit(partial(_note_final, key, seq), robust=True)
        if changed:  # one round trip, prepared statements (a bulk_update's CASE is not)
            fields = ("output", "last_seq", "pending_chunks", "token_chunks")
            _run(*(
                tx.update(Job, {"pk": job.pk}, {name: getattr(job, name) for name in fields})
                for job in changed
            ))  # fmt: skip
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
        [found] = _run(tx.query(_images_of, job=job_id, island=host_id))
        if not found:
            return False
        images, attempts = found[0]
        images = [*images, image]
        _run(tx.update(Job, {"pk": job_id}, {"images": images}))
        key = f"{attempts}:i:{len(images)}"
        publish_job_events(job_id, [client_event(job_id, key, "image", **image)])
    return True


def apply_lease(*, host_id: str, job_id: str, extend_seconds: float) -> bool:
    """``host.{id}.lease``: the job's lease now ends ``extend_seconds`` from now (capped);
    a lease never shrinks."""
    seconds = max(0.0, min(float(extend_seconds), settings.JOB_MAX_LEASE_EXTENSION_SECONDS))
    until = timezone.now() + timedelta(seconds=seconds)
    where = {"pk": job_id, "island_id": host_id, "status": S.RUNNING}
    # In one round trip: whether it was extended, and whether it runs there at all.
    extended, running = _run(
        tx.update(Job, {**where, "lease_expires_at__lt": until}, {"lease_expires_at": until}),
        tx.query(_running, job=job_id, island=host_id),
    )
    return bool(extended or running)


def duration_ms(job: Job) -> int | None:
    start: datetime | None = job.started_at or job.assigned_at
    if not (start and job.completed_at):
        return None
    return max(0, int((job.completed_at - start).total_seconds() * 1000))


def money(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None
