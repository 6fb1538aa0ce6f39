"""A job's submission: validated, counted against the account's quota, assigned to an
Island and holding its budget, in one transaction (compute.services.jobs has the state
machine it starts, core.tx the two connections it runs on)."""

import uuid
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from billing import services as ledger
from billing.models import Balance, LedgerEntry
from compute.models import Cargo, Job
from compute.selectors import market
from compute.selectors.cargos import submission as _to_submit
from compute.services import cargos as cargo_service
from compute.services import dispatch, idempotency, placement, waiting
from compute.services.lifecycle import ACTIVE, S, start_as
from compute.services.publish import Outbox
from core import metrics, tx
from core.errors import ApiError
from core.prepared import Prepared
from portal.keys import limits as key_limits
from portal.keys import usage as key_usage
from portal.models import User


async def submit_job(
    db: tx.Db,
    *,
    user: User,
    workload: str,
    job_input: Any,
    priority: int = 0,
    region: str = "",
    idempotency_key: str | None = None,
    bid: Decimal | None = None,
    queue_timeout: int | None = None,
    outbox: Outbox | None = None,
    key: key_limits.KeyLimits | None = None,
) -> Job:
    """Validate, enforce the concurrent-job quota, store the job holding its budget and
    assigned to an Island, all in one transaction: one commit stands between a request
    and its Island. With no Island free it is stored ``queued``, and so is a job that
    would overtake a queued one of its Cargo and priority (or higher); either way with
    the reason placement gives, and for at most ``queue_timeout`` seconds (None: the
    default; compute.services.waiting). The reason costs no statement: placement's index
    is in memory.

    The budget (the most the job may cost: ``bid``, else the user's saved bid for the
    Cargo, else the market rate, else the Cargo's price) is held in the same
    transaction: without the credits, 402 ``insufficient_credits`` and no job.

    ``key``: the limits of the API key it comes with (none from a session): its Cargos,
    and, read after the account's lock, its spend caps and jobs per minute
    (portal.keys.limits); the job counts in the key's usage with its hold.

    Statements that do not wait for each other's answers go together: two round trips to
    Postgres in all (the Cargo, the account's lock, count and balance, and the Island's
    lock and count; the job, its hold and the commit), three when the Island must be
    chosen once the Cargo is read (see :func:`_guess`). The assignment is published once
    committed: by the caller through ``outbox`` (the fast lane, on its event loop), or on
    commit without one."""

    if key is not None:
        key_limits.check_cargo(key, workload)
    now = timezone.now()
    caps = (key_limits.usage_statement(key, now),) if key is not None and key.counted else ()
    async with db.atomic():
        guess = await _guess(db, workload, bid=bid, region=region)
        # One lock per account serialises its submissions; counted after it (in a
        # statement of its own, so with a snapshot taken once the lock is held), the
        # quota cannot be overrun by parallel requests.
        found, _, counted, balance, *island = await db.run(
            tx.query(_to_submit, slug=workload, user=user.pk, priority=priority),
            tx.query(_lock_account, user=user.pk),
            tx.query(_active_jobs, user=user.pk),
            tx.query(_available, user=user.pk),
            *caps,
            *(dispatch.lock_statements(guess[1][0].island_id, timezone.now()) if guess else ()),
        )
        used = island.pop(0) if caps else None
        if not found:
            _last.pop(workload, None)
            raise ApiError(
                f"Unknown workload: {workload}", code="workload_not_found", status_code=404
            )
        cargo = found[0]
        cargo_service.validate_input(cargo=cargo, job_input=job_input)
        if counted and counted[0][0] >= settings.JOB_CONCURRENT_LIMIT:
            raise too_many_running()
        if idempotency_key and (earlier := await db.call(keyed_job, user, idempotency_key)):
            return earlier
        surge = (
            cargo.rate is not None and bool(cargo.rate_hosts) and await db.call(market.surge_active)
        )
        budget = market.budget_of(
            cargo, bid=bid, saved_bid=cargo.saved_bid, rate=cargo.rate,
            rate_hosts=cargo.rate_hosts, surge=surge,
        ).quantize(ledger.CENT)  # fmt: skip
        _last[workload] = (cargo, budget)
        if used is not None and key is not None:
            key_limits.check_usage(key, used, budget, now)
        job = Job(user=user, cargo=cargo, input=job_input, priority=priority, region=region,
                  budget=budget, idempotency_key=idempotency_key, status=S.PENDING,
                  created_at=now, api_key_id=key.key_id if key else None,
                  **waiting.limit(queue_timeout, since=now))  # fmt: skip
        if cargo.queued_ahead:
            # Behind a job of its Cargo that waits, for the same reason (owners' asks
            # aside, which are not read here: the next dispatch pass corrects it).
            need = placement.Need.for_job(job)
            start_as(job, "wait", queue_reason=await dispatch.waiting_reason(db, need))
            db.on_commit(dispatch.request_dispatch)
        else:
            # Lock order of a submission: the account, the Island, then the balance (the
            # hold), as at a job's end (the job, its Island, the balances).
            asks = (
                dict(await db.one(tx.query(market.ask_rows, cargo=cargo.pk)))
                if cargo.has_asks
                else {}
            )
            outbox = outbox if outbox is not None else dispatch.delivered_on_commit(db)
            need = placement.Need.for_job(job, asks=asks)
            if guess and not asks and guess[0] == need:  # the Island locked in advance
                await dispatch.place(
                    db, job, guess[1], asks=asks, outbox=outbox, locked=island, need=need
                )
            else:
                choices = await dispatch.choose(db, need)
                await dispatch.place(db, job, choices, asks=asks, outbox=outbox, need=need)
        # The key's usage after the hold: a job's end locks the balance, then the usage.
        usage = (key_usage.submitted(key.key_id, budget, now),) if key is not None else ()
        db.on_commit(partial(_count_submission, cargo.slug, budget))
        await ledger.hold_with(db, tx.insert(job), user_id=user.pk, job_id=job.pk, amount=budget,
                               available=balance[0][0] if balance else None, after=usage)  # fmt: skip
    return job


def too_many_running() -> ApiError:
    """The refusal of a job past the account's concurrent-job limit."""
    return ApiError(
        f"At most {settings.JOB_CONCURRENT_LIMIT} jobs may run at once per account",
        code="concurrent_job_limit",
        status_code=429,
        limit=settings.JOB_CONCURRENT_LIMIT,
        retry_after=1,
    )


def _count_submission(cargo: str, budget: Decimal) -> None:
    metrics.JOBS_SUBMITTED.labels(cargo).inc()
    metrics.ledger_moved([(LedgerEntry.Kind.HOLD, budget)])


# The Cargo of each slug and the budget of its last submission in this process.
_last: dict[str, tuple[Cargo, Decimal]] = {}


async def _guess(
    db: tx.Db, workload: str, *, bid: Decimal | None, region: str
) -> tuple[placement.Need, list[placement.Candidate]] | None:
    """Where the job will most likely go, before its Cargo is read: the Islands for the
    Cargo and budget of the slug's last submission, so that the first one's lock and
    count go with the first round trip. Only a guess: it is used when the job's own need,
    once known, is the same (the same Cargo fields, budget, region and no owners' asks),
    which gives the same choice; otherwise the job is placed as if there were none."""

    if (last := _last.get(workload)) is None:
        return None
    cargo, budget = last
    need = placement.Need.of(
        cargo, budget=bid if bid is not None else budget, region=region, excluded=(), asks={}
    )
    choices = await dispatch.choose(db, need)
    return (need, choices) if choices else None


# Run on every submission: built once (core.prepared).
_lock_account = Prepared(
    lambda user: User.objects.filter(pk=user).values_list("pk"), lock=True, user=uuid.UUID
)
# Read without a lock: the hold re-checks it (a constraint keeps the balance at 0 or more).
_available = Prepared(
    lambda user: Balance.objects.filter(user_id=user).values_list("available"), user=uuid.UUID
)
_active_jobs = Prepared(
    lambda user: (
        # A batch counts once: its parent (compute.services.batches).
        Job.objects.filter(user_id=user, status__in=sorted(ACTIVE), parent__isnull=True)
        .order_by()
        .values("user_id")
        .annotate(n=Count("pk"))
        .values_list("n")
    ),
    user=uuid.UUID,
)


def keyed_job(user: User, key: str, *, batch: bool = False) -> Job | None:
    """The job (``batch``: the batch's parent) already created with this Idempotency-Key
    within its lifetime (a fallback for a lost idempotency record); an older one gives
    its key up. A key that made the other kind is a 422, as the record would answer."""
    earlier = Job.objects.select_related("cargo").filter(user=user, idempotency_key=key).first()
    if earlier is None:
        return None
    if earlier.created_at > timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS):
        if (earlier.batch is not None) != batch:
            raise idempotency.reused()
        return earlier
    Job.objects.filter(pk=earlier.pk).update(idempotency_key=None)
    return None
