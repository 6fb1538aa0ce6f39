"""Exact display of credit amounts (Decimals in, no float on the way), and an account's
balance for the pages of other apps."""

from decimal import Decimal, InvalidOperation

from django import template
from django.conf import settings

from billing.selectors import available_credits

register = template.Library()

MICRO = Decimal("0.000001")


@register.filter
def credits(value: object, places: int = 2) -> str:
    """``10000`` -> ``10,000.00``, ``0.011970`` -> ``0.01197``: grouped thousands, at least
    ``places`` decimals, and every further non-zero digit (the ledger keeps six)."""
    try:
        amount = Decimal(str(value)).quantize(MICRO)
    except (InvalidOperation, ValueError):
        return ""
    whole, _, fraction = f"{amount:,f}".partition(".")
    fraction = fraction.rstrip("0").ljust(int(places), "0")
    return f"{whole}.{fraction}" if fraction else whole


@register.filter
def price(value: object) -> str:
    """A market price with the four decimals of the seed pages (``0.0100``)."""
    try:
        return str(Decimal(str(value)).quantize(Decimal("0.0001")))
    except (InvalidOperation, ValueError):
        return ""


@register.simple_tag
def credit_balance(user: object) -> dict:
    """The account's available credits, and whether they run low (the settings page)."""
    amount = available_credits(user=user)  # type: ignore[arg-type]
    return {"amount": amount, "low": amount < settings.LOW_CREDITS_THRESHOLD}
