from decimal import Decimal

from billing.models import Balance
from portal.models import User


def available_credits(*, user: User) -> Decimal:
    balance = Balance.objects.filter(user=user).values_list("available", flat=True).first()
    return balance if balance is not None else Decimal(0)
