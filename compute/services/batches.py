"""Batch jobs: one parent job and 1-100 children, each child an ordinary job of the same
Cargo (placed, billed, streamed and cancellable as any job).

- **Submission** (:func:`submit_batch`): one transaction stores the parent, its children
  and a hold for every child, so the whole batch is covered at submission or nothing is
  stored (402). The parent counts once against the account's concurrent-job quota;
  children do not. Children within ``max_parallelism`` are queued at once (a dispatch
  pass places them), the others stay ``pending`` until a sibling ends: a batch child
  that is ``pending`` is held back, and dispatch passes leave it alone.
- **The parent** is ``running`` while a child is unfinished and never goes to an Island.
  When its last child ends (:func:`child_ended`, on every job's end) its output is the
  children's merged in index order (``concat``: one after another; ``flatten``: one JSON
  array of their items), its usage their sum, and it ends ``completed`` if every child
  completed (``fail_fast``) or at least one did (``best_effort``), ``failed`` otherwise.
- **fail_fast**: the first child that fails, times out or is cancelled cancels the rest.
  Cancelling the parent cancels its unfinished children.
"""

import logging
import uuid
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from billing import services as ledger
from billing.models import Balance
from compute.models import Job
from compute.selectors import market
from compute.selectors.cargos import usable_cargo
from compute.services import cargos as cargo_service
from compute.services import waiting
from compute.services.dispatch import request_dispatch
from compute.services.ending import finish
from compute.services.lifecycle import ACTIVE, S, event_token, transition, usage_of
from compute.services.publish import client_event, publish_job_events
from compute.services.submission import keyed_job, too_many_running
from core import tx
from core.errors import ApiError
from portal.models import User

logger = logging.getLogger(__name__)

MAX_CHILDREN = 100
MERGE_STRATEGIES = ("concat", "flatten")
FAIL_MODES = ("best_effort", "fail_fast")
# A batch speaks of its jobs' ends in the words of the upstream SDK.
BATCH_STATE = {S.COMPLETED: "succeeded", S.FAILED: "failed", S.TIMEOUT: "failed"}


def batch_state(status: str) -> str:
    """A job's status as a batch answer says it: succeeded, failed, cancelled, or the
    waiting and running states as they are."""
    return BATCH_STATE.get(status, status)  # type: ignore[call-overload]


# --- submission ---------------------------------------------------------------------------
def submit_batch(
    *,
    user: User,
    workload: str,
    inputs: list[Any],
    merge_strategy: str = "concat",
    fail_mode: str = "best_effort",
    max_parallelism: int | None = None,
    region: str = "",
    bid: Decimal | None = None,
    idempotency_key: str | None = None,
) -> Job:
    """Store the parent, its children and their holds in one transaction; 404 for an
    unknown Cargo, 422 for an input the Cargo refuses (the first one, by index), 429 over
    the concurrent-job quota, 402 when the balance cannot hold the whole batch. The parent
    keeps ``idempotency_key``: a batch already made with it is answered again (the
    fallback for a lost idempotency record, as a job's)."""
    if idempotency_key and (earlier := keyed_job(user, idempotency_key, batch=True)):
        return earlier
    cargo = usable_cargo(workload)
    if cargo is None:
        raise ApiError(f"Unknown workload: {workload}", code="workload_not_found", status_code=404)
    for index, job_input in enumerate(inputs):
        try:
            cargo_service.validate_input(cargo=cargo, job_input=job_input)
        except ApiError as exc:
            raise ApiError(
                f"inputs[{index}]: {exc.detail}", code=exc.code, status_code=422, **exc.extra
            ) from None
    budget = market.budget_for(user=user, cargo=cargo, bid=bid).quantize(ledger.CENT)
    now = timezone.now()
    parallel = max_parallelism or len(inputs)
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # the quota's lock
        _check_quota(user)
        _check_balance(user, budget * len(inputs))
        parent = Job.objects.create(
            user=user, cargo=cargo, status=S.RUNNING, input={"inputs": inputs}, region=region,
            created_at=now, started_at=now, credits_used=None, idempotency_key=idempotency_key,
            batch={"merge_strategy": merge_strategy, "fail_mode": fail_mode,
                   "max_parallelism": max_parallelism},
        )  # fmt: skip
        children = Job.objects.bulk_create(
            Job(user=user, cargo=cargo, parent=parent, batch_index=index, input=job_input,
                region=region, budget=budget, created_at=now,
                status=S.QUEUED if index < parallel else S.PENDING,
                **(waiting.limit(None, since=now) if index < parallel else {}))
            for index, job_input in enumerate(inputs)
        )  # fmt: skip
        for child in children:
            ledger.hold(user_id=user.pk, job_id=child.pk, amount=budget, new_job=True)
        transaction.on_commit(request_dispatch)
    parent.cargo = cargo
    return parent


def _check_quota(user: User) -> None:
    active = Job.objects.filter(user=user, status__in=sorted(ACTIVE), parent__isnull=True).count()
    if active >= settings.JOB_CONCURRENT_LIMIT:
        raise too_many_running()


def _check_balance(user: User, needed: Decimal) -> None:
    """402 at once when the batch cannot be covered (each child's hold checks again)."""
    available = Balance.objects.filter(user=user).values_list("available", flat=True).first()
    if needed > (available or 0):
        raise ledger.InsufficientCredits(needed, available or Decimal(0))


# --- a child's end, the parent's end ------------------------------------------------------
def on_job_finished(sender: object, *, job_id: uuid.UUID, status: str, **_: Any) -> None:
    """The receiver of ``jobs.job_finished`` (sent after the commit that ended a job)."""
    try:
        child_ended(job_id=job_id, status=status)
    except Exception:
        # The sweep ends a parent whose last child's end was not followed through.
        logger.exception("could not follow the end of job %s through its batch", job_id)


def child_ended(*, job_id: uuid.UUID, status: str) -> None:
    """A cancelled parent cancels its children; a child's end lets the next held-back
    sibling go, cancels the rest under ``fail_fast`` when it did not complete, and ends
    the parent when it was the last."""
    row = Job.objects.filter(pk=job_id).values("parent_id", "batch").first()
    if row is None:
        return
    if row["batch"] is not None and status == S.CANCELLED:
        cancel_children(parent_id=job_id, reason="Cancelled with its batch")
        spent = Job.objects.filter(parent_id=job_id).values_list("credits_used", flat=True)
        Job.objects.filter(pk=job_id).update(credits_used=sum(filter(None, spent), Decimal(0)))
        return
    parent_id = row["parent_id"]
    if parent_id is None:
        return
    if str(parent_id) not in _cancelling:
        batch = Job.objects.filter(pk=parent_id).values_list("batch", flat=True).first() or {}
        if batch.get("fail_mode") == "fail_fast" and status != S.COMPLETED:
            reason = f"Cancelled: job {status} in its fail_fast batch"
            cancel_children(parent_id=parent_id, reason=reason)
        else:
            _release_next(parent_id, batch.get("max_parallelism"))
    end_parent(parent_id=parent_id)


# Parents whose children this thread is cancelling: each cancel ends a child, whose end
# comes back here (on commit) and must not start cancelling its siblings again.
_cancelling: set[str] = set()


def cancel_children(*, parent_id: uuid.UUID, reason: str) -> int:
    """Cancel every unfinished child (each as ``DELETE /jobs/:id`` would); how many."""
    ids = list(
        Job.objects.filter(parent_id=parent_id, status__in=sorted(ACTIVE))
        .order_by("batch_index")
        .values_list("pk", flat=True)
    )
    key = str(parent_id)
    nested = key in _cancelling
    _cancelling.add(key)
    try:
        return sum(finish(job_id=pk, event="cancel", error=reason, notify=True) for pk in ids)
    finally:
        if not nested:
            _cancelling.discard(key)


def _release_next(parent_id: uuid.UUID, max_parallelism: int | None) -> None:
    """Queue held-back children, lowest index first, while fewer than
    ``max_parallelism`` wait or run."""
    if not max_parallelism:
        return
    with transaction.atomic():
        Job.objects.select_for_update(no_key=True).filter(pk=parent_id).first()
        children = Job.objects.filter(parent_id=parent_id)
        busy = children.filter(status__in=[S.QUEUED, S.RUNNING]).count()
        room = max_parallelism - busy
        if room <= 0:
            return
        held = list(children.filter(status=S.PENDING).order_by("batch_index")[:room])
        for child in held:
            tx.sync(transition, child.pk, "wait", **waiting.limit(None, since=timezone.now()))
        if held:
            transaction.on_commit(request_dispatch)


def end_parent(*, parent_id: uuid.UUID) -> bool:
    """End the parent once none of its children is unfinished; True if this call did."""
    with transaction.atomic():
        parent = (
            Job.objects.select_for_update(no_key=True)
            .filter(pk=parent_id, status=S.RUNNING, batch__isnull=False)
            .first()
        )
        if parent is None:
            return False
        children = list(Job.objects.filter(parent_id=parent_id).order_by("batch_index"))
        if any(child.status in ACTIVE for child in children):
            return False
        config: dict = parent.batch or {}
        done = [child for child in children if child.status == S.COMPLETED]
        whole = len(done) == len(children)
        ok = whole if config["fail_mode"] == "fail_fast" else bool(done)
        event = "succeed" if ok else "fail"
        changes: dict[str, Any] = {
            "output": merge(config["merge_strategy"], [c.output for c in done]),
            "completed_at": timezone.now(),
            "credits_used": sum((c.credits_used or Decimal(0) for c in children), Decimal(0)),
            "prompt_tokens": _total(c.prompt_tokens for c in done),
            "completion_tokens": _total(c.completion_tokens for c in done),
            "error": "" if ok else _failure(children),
        }
        if not tx.sync(transition, parent.pk, event, **changes):
            return False
        for name, value in changes.items():
            setattr(parent, name, value)
        parent.status = S.COMPLETED if ok else S.FAILED
        _publish_end(parent)
    return True


def merge(strategy: str, outputs: list[str]) -> str:
    """``concat``: the outputs one after another; ``flatten``: one JSON array of their
    items (an output that is a JSON array gives its items, any other output itself: its
    JSON value, or its text)."""
    if strategy != "flatten":
        return "".join(outputs)
    items: list[Any] = []
    for output in outputs:
        try:
            value = orjson.loads(output)
        except orjson.JSONDecodeError:
            value = output
        items.extend(value if isinstance(value, list) else [value])
    return orjson.dumps(items).decode()


def _total(counts: Any) -> int | None:
    known = [n for n in counts if n is not None]
    return sum(known) if known else None


def _failure(children: list[Job]) -> str:
    failed = [c for c in children if c.status != S.COMPLETED]
    first = next((c for c in failed if c.status != S.CANCELLED), failed[0])
    why = first.error or first.status
    return f"{len(failed)} of {len(children)} jobs did not complete; #{first.batch_index}: {why}"


def _publish_end(parent: Job) -> None:
    events = [event_token(parent.pk, 0, 1, parent.output)] if parent.output else []
    events.append(client_event(parent.pk, f"s:{parent.status}", "status", state=parent.status))
    if parent.status == S.COMPLETED:
        usage = {k: v for k, v in usage_of(parent).items() if k != "credits_used"}
        events.append(client_event(parent.pk, "done", "done", usage=usage))
    else:
        events.append(client_event(parent.pk, "error", "error", error=parent.error))
    publish_job_events(parent.pk, events)


def end_stale_parents() -> int:
    """Parents whose children all ended but that are still running (their last child's
    end was not followed through: the process died after its commit): ended now."""
    stale = (
        Job.objects.filter(status=S.RUNNING, batch__isnull=False)
        .annotate(unfinished=Count("children", filter=Q(children__status__in=sorted(ACTIVE))))
        .filter(unfinished=0)
        .values_list("pk", flat=True)
    )
    return sum(end_parent(parent_id=pk) for pk in stale)


# --- reads --------------------------------------------------------------------------------
def present_child(child: Job) -> dict:
    return {
        "id": str(child.pk),
        "batch_index": child.batch_index,
        "state": batch_state(child.status),
        "error": child.error or None,
        "host_id": str(child.island_id) if child.island_id else None,
    }
