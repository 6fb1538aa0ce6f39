"""A job's money once it ends, through the ledger (billing.settlement): a completed job
charged at its clearing price and its Island's owner paid (the Island's ``earnings`` grow
in the same transaction), any other job's hold released; and the sweep of ended jobs whose
hold was left open."""

import uuid
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef

from billing import settlement as ledger
from billing.models import LedgerEntry
from billing.services import Kind
from compute.models import Island, Job


def _settle_on_island(
    *, user_id: object, owner_id: object | None, job_id: uuid.UUID, price: Decimal, island_id: Any
) -> ledger.Settlement | None:
    """billing.settlement.settle, and the Island's ``earnings`` (what its card shows)
    grown by the same net amount in the same transaction, so that they always equal the
    ledger's earning minus fee entries of its jobs. ``island_id``: the Island that ran the
    job (None for none); its row is locked before the balances: the lock order of the
    job path."""
    with transaction.atomic(savepoint=False):
        if island_id:
            Island.objects.select_for_update(no_key=True).filter(pk=island_id).values_list(
                "pk"
            ).first()
        done = ledger.settle(user_id=user_id, owner_id=owner_id, job_id=job_id, price=price)
        if done and done.earned and island_id:
            Island.objects.filter(pk=island_id).update(earnings=F("earnings") + done.earned)
        return done


def settle_job(job: Job, *, owner_id: object | None) -> ledger.Settlement:
    """The money of a completed job, for the transaction that completes it: charged at
    its clearing price (``Job.price``; its budget if it was never priced), its Island's
    owner (``owner_id``) paid. The caller holds the job's and its Island's row locks (in
    that order) and adds ``earned`` to the Island's ``earnings`` in its own row update
    (compute.services.karma.record_completed_job)."""
    price = job.price if job.price is not None else job.budget
    if price is None:
        price = job.cargo.price_per_job
    done = ledger.settle(user_id=job.user_id, owner_id=owner_id, job_id=job.pk, price=price)
    if done is None:  # settled before: what it was charged then
        zero = Decimal(0)
        return ledger.Settlement(charged=ledger.charged_for(job.pk), earned=zero, fee=zero)
    return done


def ended_jobs_with_open_holds(limit: int = 1000) -> list:
    """Ids of jobs in a final state whose hold was neither captured nor released."""
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
                done = _settle_on_island(
                    user_id=job.user_id,
                    owner_id=owner_id,
                    job_id=job.pk,
                    price=price,
                    island_id=job.island_id,
                )
                if job.credits_used is None:
                    Job.objects.filter(pk=job.pk).update(credits_used=ledger.charged_for(job.pk))
                fixed += done is not None
            elif ledger.release(user_id=job.user_id, job_id=job.pk) is not None:
                if job.credits_used is None:
                    Job.objects.filter(pk=job.pk).update(credits_used=Decimal(0))
                fixed += 1
    return fixed
