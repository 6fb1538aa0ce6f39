"""The ledger's side of a job's money once it ends: its hold captured (what it cost, the
Island's owner paid, the platform's fee) or released, exactly once (billing.services'
idempotency keys). Plain values in; which job and Island they are is compute's
(compute.services.settlement)."""

import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.db import transaction

from billing.services import CENT, Book, Kind, closed, job_entries, lock_balances


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


def settle(
    *, user_id: object, owner_id: object | None, job_id: uuid.UUID, price: Decimal
) -> Settlement | None:
    """Charge a completed job ``price`` (at most its hold), release the rest of the hold
    and pay ``owner_id`` the price minus the platform fee. None if already settled.

    A job without a hold (made outside the submission service) is held at its price now
    if the balance covers it; otherwise it is not charged. Without an owner nobody earns:
    the platform keeps the price. Plain values only: what the job and its Island are is
    the caller's (compute.services.settlement)."""
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
