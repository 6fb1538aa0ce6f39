"""Dispatch: assign waiting jobs to Islands, requeue what Islands drop, time jobs out.

- A new job is dispatched in the transaction that creates it (compute.services.submission:
  one commit for the job, its hold and its assignment), and its assignment is published
  right after that commit, so that the first token is not delayed by a task queue (one
  that would overtake a queued job is created queued).
- With no fitting Island it waits ``queued``, with the reason placement gives
  (compute.services.waiting); :func:`dispatch_queued` (priority, then age) runs when an
  Island may have room (:func:`request_dispatch`, called on registrations, pairings and
  heartbeats with free slots, and on a job's end when a job waits:
  :func:`dispatch_if_waiting`) and every few seconds from beat, and keeps the reasons of
  the jobs that still wait true.
- :func:`requeue_job` takes a job back from its Island (a lease run out or an Island gone
  silent: compute.services.sweep) for another Island; an assignment not delivered stays
  with its Island, to be offered again (compute.services.delivery).
"""

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from compute import signals
from compute.models import Island, Job
from compute.selectors.islands import offline_cutoff
from compute.selectors.market import ask_of, ask_overrides
from compute.services import placement, waiting
from compute.services.delivery import undelivered
from compute.services.ending import finish
from compute.services.lifecycle import WAITING, S, start_as, transition
from compute.services.publish import (
    Assignment,
    Outbox,
    assignment_payload,
    publish_cancel,
    publish_job_events,
)
from core import metrics, tx
from core.prepared import Prepared
from core.redis import redis_client
from sail.client import loop_connection

logger = logging.getLogger(__name__)
CANDIDATES = 5
PASS_LOCK, PASS_AGAIN, PASS_REQUESTED = "dispatch:pass", "dispatch:again", "dispatch:requested"
# A pass holds its lock this long, renewed as it goes: a worker killed in a pass blocks
# the next passes for seconds, not a minute (bench/README.md, "Faults").
PASS_LOCK_SECONDS = 10


def dispatch_job(job_id: uuid.UUID | str) -> str:
    """Assign a pending or queued job (the queue's) to the best Island that takes it now;
    returns ``assigned``, ``queued`` or ``gone`` (no longer waiting)."""
    job = Job.objects.select_related("cargo").filter(pk=job_id, status__in=WAITING).first()
    if job is None:
        return "gone"
    asks = ask_overrides(job.cargo)
    need = placement.Need.for_job(job, asks=asks)
    return tx.sync(place, job, tx.sync(choose, need), asks=asks, need=need)


async def _index(db: tx.Db) -> placement.IslandIndex:
    """The placement index, which a thread brings up to date when it must: never the
    event loop."""
    index = placement.index()
    if index.blocking_refresh_due():
        await db.call(index.maybe_refresh)
    else:
        index.maybe_refresh()  # at most starts a refresh in a thread of its own
    return index


async def choose(db: tx.Db, need: placement.Need) -> list[placement.Candidate]:
    """The Islands that meet ``need``, best first."""
    return (await _index(db)).choose(need, limit=CANDIDATES)


async def waiting_reason(db: tx.Db, need: placement.Need) -> str:
    """Why no Island takes ``need`` now (a ``Job.QueueReason``), by placement's filters."""
    return (await _index(db)).waiting_reason(need)


async def place(
    db: tx.Db,
    job: Job,
    choices: list[placement.Candidate],
    *,
    asks: dict,
    outbox: Outbox | None = None,
    locked: list | None = None,
    need: placement.Need | None = None,
) -> str:
    """Assign ``job`` to the first of ``choices`` that takes it (:func:`claim`), else
    queue it with the reason placement gives; ``assigned``, ``queued`` or ``gone``. A new
    job (not stored yet: its submission) takes its state in memory, to be inserted in it;
    a waiting one is updated, and its clients told when its reason changed. The
    assignment is published once the transaction commits: by ``outbox``'s owner when
    given, on commit otherwise. ``locked``: the first choice's rows, already read in this
    transaction with :func:`lock_statements`. ``need``: the job's, when known."""
    for candidate in choices:
        outcome = await claim(db, job, candidate, asks=asks, outbox=outbox, locked=locked)
        locked = None
        if outcome != "busy":
            return _decided(db, outcome, job)
    need = need or placement.Need.for_job(job, asks=asks)
    reason = await waiting_reason(db, need)
    if job._state.adding:
        start_as(job, "wait", queue_reason=reason)
    elif await transition(db, job.pk, "wait", queue_reason=reason):
        job.status, job.queue_reason = S.QUEUED, reason
        await db.call(publish_job_events, job.pk, [waiting.queued_event(job)])
    else:
        if job.queue_reason != reason:
            await db.call(waiting.note_reason, [job.pk], reason)
        return _decided(db, "queued", job)
    # This process's placement index may not know yet of an Island that came online a
    # moment ago: a pass, which refreshes the index first, looks again at once rather
    # than at the next beat (once per job: only a pending one gets here).
    db.on_commit(request_dispatch)
    return _decided(db, "queued", job)


def _decided(db: tx.Db, outcome: str, job: Job) -> str:
    db.on_commit(partial(metrics.dispatched, outcome, job.created_at))
    return outcome


# Run on every dispatch: built once (core.prepared). The count runs after the lock, in
# a statement of its own: its snapshot is taken once the lock is held, so it is exact.
_lock_island = Prepared(
    lambda island, now, cutoff: Island.objects.filter(
        Q(cooldown_until__isnull=True) | Q(cooldown_until__lte=now),
        pk=island,
        owner__isnull=False,
        status=Island.Status.ONLINE,
        suspended=False,
        last_heartbeat_at__gte=cutoff,
    ).values_list("max_concurrent_jobs", "asking_prices", "name", "nkey"),
    lock=True,
    island=uuid.UUID,
    now=datetime,
    cutoff=datetime,
)
_running_on = Prepared(
    lambda island: (
        Job.objects.filter(island_id=island, status=S.RUNNING)
        .order_by()
        .values("island_id")
        .annotate(n=Count("pk"))
        .values_list("n")
    ),
    island=uuid.UUID,
)


def lock_statements(island_id: uuid.UUID | str, now: datetime) -> tuple[tx.Statement, tx.Statement]:
    """An Island's lock (``None`` rows: it may not take jobs now) and its running count."""
    return (
        tx.query(_lock_island, island=island_id, now=now, cutoff=offline_cutoff(now)),
        tx.query(_running_on, island=island_id),
    )


async def claim(
    db: tx.Db,
    job: Job,
    candidate: placement.Candidate,
    *,
    asks: dict,
    outbox: Outbox | None = None,
    locked: list | None = None,
) -> str:
    """Re-check the Island under its row lock (exact filters, free slots, its ask within
    the job's budget, in decimals) and assign at that ask: the job's clearing price.
    ``assigned``, ``busy`` (try the next Island) or ``gone``. ``asks``: the owners' API
    asks for the job's Cargo (compute.selectors.market.ask_overrides). Joins the caller's
    transaction if there is one (a new job's submission), whose earlier round trip may
    have taken the lock already (``locked``: the results of :func:`lock_statements`)."""
    now = timezone.now()
    index = placement.index()
    island_id = uuid.UUID(str(candidate.island_id))
    async with db.atomic():
        if locked is None:
            locked = await db.run(*lock_statements(island_id, now))
        locked, counted = locked
        if not locked:
            index.note_unavailable(candidate.island_id)
            return "busy"
        max_jobs, asking_prices, name, nkey = locked[0]
        running = counted[0][0] if counted else 0
        budget = job.budget if job.budget is not None else job.cargo.price_per_job
        price = ask_of(Island(pk=island_id, asking_prices=asking_prices), job.cargo, asks)
        if price > budget:
            return "busy"  # its ask changed since the index saw it
        if running >= max(1, max_jobs):
            index.note_load(candidate.island_id, running)
            return "busy"
        attempt = job.attempts + 1
        lease = now + timedelta(seconds=settings.JOB_LEASE_SECONDS)
        changes: dict[str, Any] = {
            "island_id": island_id, "attempts": attempt, "assigned_at": now,
            "lease_expires_at": lease, "price": price,
            "deadline_at": now + timedelta(seconds=job.cargo.time_limit_seconds),
        }  # fmt: skip
        if job._state.adding:
            start_as(job, "assign", **changes)
        elif not await transition(db, job.pk, "assign", at_attempt=job.attempts, **changes):
            return "gone"
        if outbox is None:
            outbox = delivered_on_commit(db)
        outbox.add(
            Assignment(
                job_id=job.pk,
                island_id=str(candidate.island_id),
                attempt=attempt,
                payload=assignment_payload(job, lease_ms=int(lease.timestamp() * 1000)),
                island_name=name,
                field=nkey is None,
            )
        )
    index.note_load(candidate.island_id, running + 1)
    return "assigned"


async def deliver(outbox: Outbox) -> None:
    """Publish ``outbox`` on this event loop's connection (its transaction committed);
    what cannot be published is requeued."""

    failed = await outbox.asend(await loop_connection())
    if failed:
        await tx.in_thread(undelivered, failed)


def delivered_on_commit(db: tx.Db) -> Outbox:
    """An outbox that sync code publishes once the current transaction commits."""
    outbox = Outbox()
    db.on_commit(lambda: undelivered(outbox.send()))
    return outbox


# --- the queue ----------------------------------------------------------------------
def request_dispatch() -> None:
    """Ask for a dispatch pass soon (cheap; at most a few per second run). Requests made
    before a pass starts share it; one made after it started gets a pass of its own."""

    try:
        if redis_client().set(PASS_REQUESTED, 1, nx=True, px=250):
            signals.pass_wanted.send(sender=Job)
    except Exception:
        logger.exception("could not request a dispatch pass; beat will run one")


def dispatch_if_waiting() -> None:
    """After a job's end freed a slot: a pass only when a job waits queued (at most job
    ends none does, and a pass costs a task, a lock and a query). Looked at after the end
    committed, so a job queued later is not missed: its own commit asks for a pass
    (:func:`place`), which sees the slot free."""
    if _a_queued_job.first() is not None:
        request_dispatch()


# Run after every job's end: built once (core.prepared).
_a_queued_job = Prepared(
    lambda: Job.objects.filter(status=S.QUEUED).order_by().values_list("pk")[:1]
)


def dispatch_queued(*, limit: int = 500) -> int:
    """Dispatch waiting jobs, highest priority first, then oldest; returns how many were
    assigned. One pass at a time; a pass requested meanwhile runs right after."""
    redis = redis_client()
    if not redis.set(PASS_LOCK, 1, nx=True, ex=PASS_LOCK_SECONDS):
        redis.set(PASS_AGAIN, 1, ex=60)
        return 0
    assigned = 0
    try:
        while True:
            # From here on, news (a queued job, an Island online) may come too late for
            # this pass: let it request another (which finds the lock and sets AGAIN).
            redis.delete(PASS_AGAIN, PASS_REQUESTED)
            assigned += _pass(limit, renew=lambda: redis.expire(PASS_LOCK, PASS_LOCK_SECONDS))
            if not redis.get(PASS_AGAIN):
                return assigned
    finally:
        redis.delete(PASS_LOCK)


def _pass(limit: int, *, renew: Callable[[], Any]) -> int:
    stale = timezone.now() - timedelta(seconds=5)  # pending ones whose own dispatch died
    # (a pending batch child is held back by its batch: compute.services.batches)
    jobs = list(
        Job.objects.filter(
            Q(status=S.QUEUED) | Q(status=S.PENDING, created_at__lt=stale, parent__isnull=True)
        )
        .order_by("-priority", "created_at")
        .values_list("pk", "cargo_id", "excluded_islands")[:limit]
    )
    if not jobs:  # most passes (every job's end asks for one): nothing to place
        return 0
    placement.index().refresh()  # a pass often follows news of an Island: see it now
    blocked: set[int] = set()
    assigned, untried = 0, []
    for n, (job_id, cargo_id, excluded) in enumerate(jobs, 1):
        if n % 50 == 0:
            renew()
        if cargo_id in blocked and not excluded:
            untried.append(job_id)
            continue
        outcome = dispatch_job(job_id)
        assigned += outcome == "assigned"
        if outcome == "queued" and not excluded:
            blocked.add(cargo_id)  # the same needs will not fit either in this pass
    if untried:  # still, each one's clients are told why it waits
        waiting.explain(untried)
    return assigned


# --- dropped jobs, leases, time limits ----------------------------------------------
def requeue_job(
    *,
    job_id: uuid.UUID | str,
    island_id: uuid.UUID | str,
    reason: str,
    exclude: bool = True,
    cancel: bool = True,
) -> bool:
    """Take a running job back from ``island_id`` and queue it for another Island (up to
    ``JOB_MAX_ATTEMPTS`` Islands, then it fails); ``cancel`` tells the Island to stop it."""
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(no_key=True)
            .filter(pk=job_id, island_id=island_id, status=S.RUNNING)
            .first()
        )
        if job is None:
            return False
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            error = f"{reason}; no Island finished the job in {job.attempts} attempts"
            return finish(job_id=job.pk, event="fail", error=error, notify=True)
        excluded = list(job.excluded_islands or [])
        if exclude and str(island_id) not in excluded:
            excluded.append(str(island_id))
        job.excluded_islands, job.status = excluded, S.QUEUED
        job.queue_reason = placement.waiting_reason(
            placement.Need.for_job(job, asks=ask_overrides(job.cargo))
        )
        # It waits for an Island again: for as long as its submission allowed.
        changes = waiting.limit(job.queue_timeout_seconds, since=timezone.now())
        for name, value in changes.items():
            setattr(job, name, value)
        tx.sync(
            transition,
            job.pk,
            "requeue",
            on_island=island_id,
            island=None,
            excluded_islands=excluded,
            output="",
            last_seq=0,
            token_chunks=0,
            pending_chunks={},
            images=[],
            assigned_at=None,
            started_at=None,
            lease_expires_at=None,
            deadline_at=None,
            queue_reason=job.queue_reason,
            **changes,
        )
        key = f"{job.attempts}:s:requeued"
        publish_job_events(job.pk, [waiting.queued_event(job, key=key, cause=reason)])
        if cancel:
            transaction.on_commit(lambda: publish_cancel(island_id, job_id))
        transaction.on_commit(request_dispatch)
    placement.index().note_load(str(island_id), 0)
    return True
