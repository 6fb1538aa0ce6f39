"""Checks that the ledger explains the money: for fault-injection tests and benches, and
for an operator after an incident. Each returns what is wrong, as sentences (none: fine)."""

import uuid
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from billing.models import Balance, LedgerEntry

K = LedgerEntry.Kind


def job_problems(job_ids: Iterable[uuid.UUID | str]) -> list[str]:
    """Ended jobs whose hold was not taken once and given back once: exactly one hold,
    at most one capture (a charge) and one release, which add up to the hold."""
    entries: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    ids = [uuid.UUID(str(job_id)) for job_id in job_ids]
    rows = LedgerEntry.objects.filter(job_id__in=ids, kind__in=[K.HOLD, K.CAPTURE, K.RELEASE])
    for found, kind, amount in rows.values_list("job_id", "kind", "amount"):
        entries[str(found)][kind].append(amount)
    problems = []
    for job in map(str, ids):
        kinds = entries[job]
        holds, captures, releases = (len(kinds[k]) for k in (K.HOLD, K.CAPTURE, K.RELEASE))
        if holds != 1 or captures > 1 or releases > 1:
            problems.append(f"job {job}: {holds} holds, {captures} captures, {releases} releases")
        elif sum(kinds[K.CAPTURE] + kinds[K.RELEASE], Decimal(0)) != kinds[K.HOLD][0]:
            problems.append(f"job {job}: its hold of {kinds[K.HOLD][0]} is not settled")
    return problems


def balance_problems(user_ids: Iterable[uuid.UUID | str]) -> list[str]:
    """Accounts whose balance is not the sum of their ledger entries' effects."""
    problems = []
    for user_id in user_ids:
        totals = [Decimal(0)] * 3
        for kind, amount in LedgerEntry.objects.filter(user_id=user_id).values_list(
            "kind", "amount"
        ):
            totals = [
                t + f * amount for t, f in zip(totals, LedgerEntry.EFFECTS[kind], strict=True)
            ]
        balance = (
            Balance.objects.filter(user_id=user_id)
            .values_list("available", "held", "earnings")
            .first()
            or (Decimal(0),) * 3
        )
        if tuple(balance) != tuple(totals):
            problems.append(f"account {user_id}: balance {balance} but ledger {tuple(totals)}")
    return problems
