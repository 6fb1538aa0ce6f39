"""A job's states and how it moves between them: every status change goes through
:func:`transition`, a conditional UPDATE over the table :data:`TRANSITIONS`: it applies
only when the row is still in an allowed source state (and, for Island reports, still on
that Island and attempt), so two workers handling the same message, or a late message
after a final state, never apply twice. Final states never change: no transition leaves
them. Also what every client event of a job says of it (usage, tokens)."""

import uuid
from typing import Any

from django.dispatch import Signal

from compute.models import Job
from compute.services.publish import client_event
from core import tx

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
# Sent after the commit that made a job final: ``job_id``, ``status``.
job_finished = Signal()


async def transition(
    db: tx.Db,
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
    sources, target = TRANSITIONS[event]
    where: dict[str, Any] = {"pk": job_id, "status__in": sources}
    if on_island is not None:
        where["island_id"] = on_island
    if at_attempt is not None:
        where["attempts"] = at_attempt
    return await db.one(tx.update(Job, where, {"status": target, **changes})) == 1


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
# What an Island may report spending beyond tokens (an ONNX job: its time and pixels).
METERED = ("milliseconds", "pixels")


def usage_of(job: Job) -> dict:
    known = [n for n in (job.prompt_tokens, job.completion_tokens) if n is not None]
    return {
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": job.completion_tokens,
        "total_tokens": sum(known) if known else None,
        # A JSON number as in the seed page (0 until the job is settled: clients declare
        # it a number); the stored value is an exact decimal with 6 places, which a
        # float's shortest repr reproduces digit for digit.
        "credits_used": float(job.credits_used or 0),
        **(job.metered or {}),
    }


def event_token(job_id: object, attempt: int, seq: int, text: str) -> tuple[str, dict]:
    return client_event(job_id, f"{attempt}:t:{seq}", "token", content=text, seq=seq)
