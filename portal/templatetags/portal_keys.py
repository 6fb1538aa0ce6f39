from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def amount(value: Decimal | None) -> str:
    """A stored amount of credits as given, without trailing zeros: 0.045, 2.5, 100."""
    return "" if value is None else format(value.normalize(), "f")
