"""How the project stores an amount of credits."""

from typing import TypedDict


class Digits(TypedDict):
    max_digits: int
    decimal_places: int


# Every amount of credits (balances, ledger, prices, bids, jobs' budgets and costs).
MONEY: Digits = {"max_digits": 20, "decimal_places": 6}
