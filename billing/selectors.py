"""Reads of balances and the ledger."""

from decimal import Decimal

from django.db.models import QuerySet

from billing.models import Balance, LedgerEntry
from portal.models import User


def balance_of(*, user: User) -> Balance:
    return Balance.objects.filter(user=user).first() or Balance(user=user)


def available_credits(*, user: User) -> Decimal:
    balance = Balance.objects.filter(user=user).values_list("available", flat=True).first()
    return balance if balance is not None else Decimal(0)


def ledger_entries(*, user: User) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(user=user).order_by("-created_at", "-id")
