"""Writes to the ledger. Every movement is one immutable entry plus an update of the
balance projection, in one transaction, keyed so that a retry never applies twice."""

from decimal import Decimal

from django.db import transaction

from billing.models import Balance, LedgerEntry
from portal.models import User


def _locked_balance(user: User) -> Balance:
    # Locking the balance row serialises every movement of one account, so the
    # idempotency check below cannot race with a concurrent twin.
    Balance.objects.get_or_create(user=user)
    return Balance.objects.select_for_update().get(user=user)


@transaction.atomic
def grant(*, user: User, amount: Decimal, reason: str, idempotency_key: str) -> LedgerEntry:
    """Add credits to an account (sign-up grant, admin grant). Idempotent by key."""
    balance = _locked_balance(user)
    existing = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
    if existing:
        return existing
    balance.available += amount
    balance.save(update_fields=["available"])
    return LedgerEntry.objects.create(
        user=user,
        kind=LedgerEntry.Kind.GRANT,
        amount=amount,
        reason=reason,
        idempotency_key=idempotency_key,
        available_after=balance.available,
        held_after=balance.held,
    )
