"""A job's money once it ends: its hold captured (what it cost, the Island's owner paid,
the platform's fee) or released, exactly once (billing.services' idempotency keys); and
the sweep of ended jobs whose hold was left open."""

import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from billing.models import LedgerEntry
from billing.services import CENT, Book, Kind, closed, job_entries, lock_balances
from compute.models import Island, Job


def release(*, user_id: object, job_id: uuid.UUID) -> Decimal | None:
    """Give a failed, cancelled or timed-out job's hold back: no charge. Returns the
    amount released, None if there was nothing to release (no hold, or already closed)."""
    with transaction.atomic(savepoint=False):
        balances = lock_balances(user_id)
        entries = job_entries(job_id)
        held = entries.get("hold")
        if held is None or closed(entries):
            return None
        book = Book(balances)
        book.move(user_id, Kind.RELEASE, held, f"release:{job_id}", job_id=job_id)
        book.write()
        return held


@dataclass(frozen=True)
class Settlement:
    charged: Decimal
    earned: Decimal
    fee: Decimal


def split_fee(price: Decimal) -> tuple[Decimal, Decimal]:
    """``(earned, fee)`` of a price: the fee is rounded half-even to the ledger's 6
    places, and the two always add up to the price exactly."""
    fee = (price * settings.PLATFORM_FEE_RATE).quantize(CENT, rounding=ROUND_HALF_EVEN)
    return price - fee, fee


_ISLAND_OF_JOB = object()


def settle(
    *,
    user_id: object,
    owner_id: object | None,
    job_id: uuid.UUID,
    price: Decimal,
    island_id: Any = _ISLAND_OF_JOB,
) -> Settlement | None:
    """Charge a completed job its clearing price, release the rest of the hold and pay
    the Island's owner the price minus the platform fee. None if already settled.

    The Island's ``earnings`` (what its card shows) grow by the same net amount in the
    same transaction, so they always equal the ledger's earning minus fee entries of its
    jobs. ``island_id``: the Island that ran the job (looked up when not given; None for
    none). Its row is locked before the balances: the lock order of the job path.

    A job without a hold (made outside the submission service) is held at its price now
    if the balance covers it; otherwise it is not charged. An Island without an owner
    earns nothing: the platform keeps the price."""

    with transaction.atomic(savepoint=False):
        if island_id is _ISLAND_OF_JOB:
            island_id = Job.objects.filter(pk=job_id).values_list("island_id", flat=True).first()
        if island_id:
            Island.objects.select_for_update(no_key=True).filter(pk=island_id).values_list(
                "pk"
            ).first()
        done = _settle(user_id=user_id, owner_id=owner_id, job_id=job_id, price=price)
        if done and done.earned and island_id:
            Island.objects.filter(pk=island_id).update(earnings=F("earnings") + done.earned)
        return done


def _settle(
    *, user_id: object, owner_id: object | None, job_id: uuid.UUID, price: Decimal
) -> Settlement | None:
    with transaction.atomic(savepoint=False):
        balances = lock_balances(user_id, *([owner_id] if owner_id else []))
        entries = job_entries(job_id)
        if closed(entries):
            return None
        book = Book(balances)
        held = entries.get("hold")
        if held is None:
            held = price if balances[str(user_id)].available >= price else Decimal(0)
            if held:
                book.move(user_id, Kind.HOLD, held, f"hold:{job_id}", job_id=job_id)
        price = min(price, held)
        book.move(user_id, Kind.CAPTURE, price, f"capture:{job_id}", job_id=job_id)
        if held > price:
            book.move(user_id, Kind.RELEASE, held - price, f"rest:{job_id}", job_id=job_id)
        earned, fee = split_fee(price) if owner_id else (Decimal(0), Decimal(0))
        if owner_id and price:
            book.move(owner_id, Kind.EARNING, price, f"earning:{job_id}", job_id=job_id)
            if fee:
                book.move(owner_id, Kind.FEE, fee, f"fee:{job_id}", job_id=job_id)
        book.write()
        return Settlement(charged=price, earned=earned, fee=fee)


def charged_for(job_id: uuid.UUID) -> Decimal:
    """What the job was charged (its capture), 0 if nothing."""
    return job_entries(job_id).get("capture", Decimal(0))


def settle_job(job: "Job", *, owner_id: object | None) -> Settlement:
    """The money of a completed job, for the transaction that completes it: charged at
    its clearing price (``Job.price``; its budget if it was never priced), its Island's
    owner (``owner_id``) paid. The caller holds the job's and its Island's row locks (in
    that order) and adds ``earned`` to the Island's ``earnings`` in its own row update
    (compute.services.karma.record_completed_job)."""
    price = job.price if job.price is not None else job.budget
    if price is None:
        price = job.cargo.price_per_job
    done = _settle(user_id=job.user_id, owner_id=owner_id, job_id=job.pk, price=price)
    return done or Settlement(charged=charged_for(job.pk), earned=Decimal(0), fee=Decimal(0))


def ended_jobs_with_open_holds(limit: int = 1000) -> list:
    """Ids of jobs in a final state whose hold was neither captured nor released."""
    from django.db.models import Exists, OuterRef

    entries = LedgerEntry.objects.filter(job_id=OuterRef("pk"))
    return list(
        Job.objects.filter(status__in=Job.FINAL, user__balance__held__gt=0)
        .filter(Exists(entries.filter(kind=Kind.HOLD)))
        .exclude(Exists(entries.filter(kind__in=[Kind.CAPTURE, Kind.RELEASE])))
        .values_list("pk", flat=True)[:limit]
    )


def release_holds_of_ended_jobs() -> int:
    """Safety net (Celery beat): a job that ended without its hold being captured or
    released (a worker killed between the job's final state and its settlement, or a
    state written by hand) is settled now: a completed job is charged its clearing price
    and its Island's owner paid; any other is released. Returns how many it fixed."""

    fixed = 0
    for job_id in ended_jobs_with_open_holds():
        with transaction.atomic():
            job = (
                Job.objects.select_for_update(of=("self",), no_key=True)
                .select_related("cargo")
                .filter(pk=job_id, status__in=Job.FINAL)
                .first()
            )
            if job is None:
                continue
            if job.status == Job.Status.COMPLETED:
                owner_id = None
                if job.island_id:
                    owner_id = (
                        Island.objects.filter(pk=job.island_id)
                        .values_list("owner_id", flat=True)
                        .first()
                    )
                price = next(
                    p for p in (job.price, job.budget, job.cargo.price_per_job) if p is not None
                )
                done = settle(
                    user_id=job.user_id,
                    owner_id=owner_id,
                    job_id=job.pk,
                    price=price,
                    island_id=job.island_id,
                )
                if job.credits_used is None:
                    Job.objects.filter(pk=job.pk).update(credits_used=charged_for(job.pk))
                fixed += done is not None
            elif release(user_id=job.user_id, job_id=job.pk) is not None:
                if job.credits_used is None:
                    Job.objects.filter(pk=job.pk).update(credits_used=Decimal(0))
                fixed += 1
    return fixed
