"""Writes to the ledger.

Every movement is one immutable entry plus an update of the balance projection, in one
transaction, under a unique idempotency key: a duplicate event, a retried task or a
second worker handling the same job finds the key taken and changes nothing. Balance
rows are locked in primary-key order, so two movements touching the same accounts
never deadlock.
"""

import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import Balance, LedgerEntry
from portal.api.errors import ApiError
from portal.models import User

Kind = LedgerEntry.Kind
CENT = Decimal("0.000001")


class InsufficientCredits(ApiError):
    def __init__(self, needed: Decimal, available: Decimal):
        super().__init__(
            f"Insufficient credits: this job needs {needed} and {available} are available",
            code="insufficient_credits",
            status_code=402,
        )


def _lock(*user_ids: object) -> dict[object, Balance]:
    ids = sorted({str(uid) for uid in user_ids})
    for uid in ids:
        Balance.objects.get_or_create(user_id=uid)
    rows = Balance.objects.select_for_update().filter(user_id__in=ids).order_by("user_id")
    return {str(b.user_id): b for b in rows}


def _apply(
    balance: Balance,
    *,
    kind: str,
    amount: Decimal,
    key: str,
    job_id: uuid.UUID | None = None,
    reason: str = "",
) -> LedgerEntry | None:
    """Move ``amount`` on a locked balance; None when the key was already applied."""
    if LedgerEntry.objects.filter(idempotency_key=key).exists():
        return None
    d_available, d_held, d_earnings = LedgerEntry.EFFECTS[kind]
    balance.available += d_available * amount
    balance.held += d_held * amount
    balance.earnings += d_earnings * amount
    balance.save(update_fields=["available", "held", "earnings"])
    return LedgerEntry.objects.create(
        user_id=balance.user_id,
        kind=kind,
        amount=amount,
        job_id=job_id,
        idempotency_key=key,
        reason=reason,
        available_after=balance.available,
        held_after=balance.held,
        earnings_after=balance.earnings,
    )


@transaction.atomic
def grant(*, user: User, amount: Decimal, reason: str, idempotency_key: str) -> LedgerEntry:
    """Add credits to an account (sign-up grant, admin grant). Idempotent by key."""
    balance = _lock(user.pk)[str(user.pk)]
    _apply(balance, kind=Kind.GRANT, amount=amount, key=idempotency_key, reason=reason)
    return LedgerEntry.objects.get(idempotency_key=idempotency_key)


@transaction.atomic
def adjust(*, user: User, amount: Decimal, reason: str, idempotency_key: str) -> LedgerEntry:
    """A signed correction by an admin; the available balance may not go below zero."""
    balance = _lock(user.pk)[str(user.pk)]
    if balance.available + amount < 0:
        raise InsufficientCredits(-amount, balance.available)
    _apply(balance, kind=Kind.ADJUSTMENT, amount=amount, key=idempotency_key, reason=reason)
    return LedgerEntry.objects.get(idempotency_key=idempotency_key)


@transaction.atomic
def hold(*, user_id: object, job_id: uuid.UUID, amount: Decimal) -> None:
    """Reserve a job's worst-case price; raises InsufficientCredits (402) otherwise."""
    balance = _lock(user_id)[str(user_id)]
    if LedgerEntry.objects.filter(idempotency_key=f"hold:{job_id}").exists():
        return
    if balance.available < amount:
        raise InsufficientCredits(amount, balance.available)
    _apply(balance, kind=Kind.HOLD, amount=amount, key=f"hold:{job_id}", job_id=job_id)


def _held_for(job_id: uuid.UUID) -> Decimal:
    entry = LedgerEntry.objects.filter(idempotency_key=f"hold:{job_id}").first()
    return entry.amount if entry else Decimal(0)


def _already_closed(job_id: uuid.UUID) -> bool:
    return LedgerEntry.objects.filter(
        idempotency_key__in=[f"release:{job_id}", f"capture:{job_id}"]
    ).exists()


@transaction.atomic
def release(*, user_id: object, job_id: uuid.UUID) -> None:
    """Give a failed, cancelled or timed-out job's hold back: no charge."""
    balance = _lock(user_id)[str(user_id)]
    held = _held_for(job_id)
    if held and not _already_closed(job_id):
        _apply(balance, kind=Kind.RELEASE, amount=held, key=f"release:{job_id}", job_id=job_id)


@dataclass(frozen=True)
class Settlement:
    charged: Decimal
    earned: Decimal
    fee: Decimal


def split_fee(price: Decimal) -> tuple[Decimal, Decimal]:
    fee = (price * settings.PLATFORM_FEE_RATE).quantize(CENT, rounding=ROUND_HALF_EVEN)
    return price - fee, fee


@transaction.atomic
def settle(
    *, user_id: object, owner_id: object | None, job_id: uuid.UUID, price: Decimal
) -> Settlement | None:
    """Charge a completed job its clearing price, release the rest of the hold and pay
    the Island's owner the price minus the platform fee. None if already settled."""
    balances = _lock(user_id, *([owner_id] if owner_id else []))
    consumer = balances[str(user_id)]
    held = _held_for(job_id)
    if _already_closed(job_id):
        return None
    price = min(price, held)
    _apply(consumer, kind=Kind.CAPTURE, amount=price, key=f"capture:{job_id}", job_id=job_id)
    if held > price:
        _apply(
            consumer, kind=Kind.RELEASE, amount=held - price, key=f"rest:{job_id}", job_id=job_id
        )
    earned, fee = split_fee(price)
    if owner_id and price:
        owner = balances[str(owner_id)]
        _apply(owner, kind=Kind.EARNING, amount=price, key=f"earning:{job_id}", job_id=job_id)
        _apply(owner, kind=Kind.FEE, amount=fee, key=f"fee:{job_id}", job_id=job_id)
    return Settlement(charged=price, earned=earned, fee=fee)


# --- The compute exchange -------------------------------------------------------------


def snapshot_rates() -> int:
    """Record avg/min/max ask and Island count per enabled Cargo; returns rows written."""
    from billing.models import RateSnapshot
    from billing.selectors import ask_of, ask_overrides, online_islands, surge_active
    from compute.capability import can_serve
    from compute.models import Cargo

    islands = list(
        online_islands().only("id", "asking_prices", "runtimes", "capabilities", "status")
    )
    surge = surge_active()
    now = timezone.now()
    rows = []
    for cargo in Cargo.objects.filter(is_enabled=True, is_approved=True):
        overrides = ask_overrides(cargo)
        asks = [ask_of(i, cargo, overrides) for i in islands if can_serve(i, cargo)]
        reference = asks or [cargo.price_per_job]
        rows.append(
            RateSnapshot(
                cargo=cargo,
                avg_price=(sum(reference) / len(reference)).quantize(CENT),
                min_price=min(reference),
                max_price=max(reference),
                num_hosts=len(asks),
                surge=surge,
                created_at=now,
            )
        )
    RateSnapshot.objects.bulk_create(rows)
    return len(rows)


@transaction.atomic
def set_asking_prices(*, owner: User, island_id: object, prices: dict[str, Decimal]) -> dict:
    """An Island owner's asks per Cargo slug; returns the asks now in force."""
    from billing.models import AskingPrice
    from compute.models import Cargo, Island

    island = Island.objects.filter(pk=island_id, owner=owner).first()
    if island is None:
        raise ApiError("Island not found", code="not_found", status_code=404)
    cargos = {c.slug: c for c in Cargo.objects.filter(slug__in=list(prices))}
    unknown = sorted(set(prices) - set(cargos))
    if unknown:
        raise ApiError(
            f"Unknown Cargo: {', '.join(unknown)}",
            code="validation_error",
            status_code=422,
            details={"prices": [f"Unknown Cargo: {slug}" for slug in unknown]},
        )
    for slug, price in prices.items():
        AskingPrice.objects.update_or_create(
            island=island,
            cargo=cargos[slug],
            defaults={"price": price, "updated_at": timezone.now()},
        )
    asks = AskingPrice.objects.filter(island=island).select_related("cargo")
    return {ask.cargo.slug: str(ask.price) for ask in asks}


def save_bid(*, user: User, cargo_slug: str, bid: Decimal) -> None:
    from billing.models import SavedBid
    from compute.models import Cargo

    cargo = Cargo.objects.filter(slug=cargo_slug, is_enabled=True).first()
    if cargo is None:
        raise ApiError("Cargo not found", code="not_found", status_code=404)
    SavedBid.objects.update_or_create(
        user=user, cargo=cargo, defaults={"bid": bid, "updated_at": timezone.now()}
    )


def release_holds_of_ended_jobs() -> int:
    """Safety net: a hold whose job ended without a capture or release (a worker killed
    between the job's final state and its settlement) is settled now."""
    from compute.models import Job

    holds = LedgerEntry.objects.filter(kind=Kind.HOLD).values_list("job_id", flat=True)
    closed = LedgerEntry.objects.filter(kind__in=[Kind.CAPTURE, Kind.RELEASE]).values_list(
        "job_id", flat=True
    )
    jobs = Job.objects.filter(id__in=holds.difference(closed), status__in=Job.FINAL)
    fixed = 0
    for job in jobs.select_related("island"):
        if job.status == Job.Status.COMPLETED and job.price is not None:
            owner = job.island.owner_id if job.island else None
            settle(user_id=job.user_id, owner_id=owner, job_id=job.id, price=job.price)
        else:
            release(user_id=job.user_id, job_id=job.id)
        fixed += 1
    return fixed
