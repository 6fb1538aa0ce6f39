"""Writes to the ledger.

Every movement is one immutable entry plus an update of the balance projection, in one
transaction, under a unique idempotency key: a duplicate event, a retried task or a
second worker handling the same job finds the key taken and changes nothing. Balance
rows are locked in primary-key order, so two movements touching the same accounts
never deadlock.
"""

import uuid
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing.models import Balance, LedgerEntry
from core import metrics, prepared, tx
from core.errors import ApiError
from core.prepared import Prepared
from portal.models import User

if TYPE_CHECKING:
    pass

Kind = LedgerEntry.Kind
CENT = Decimal("0.000001")


class InsufficientCredits(ApiError):
    def __init__(self, needed: Decimal, available: Decimal):
        super().__init__(
            f"Insufficient credits: this job needs {needed} and {available} are available",
            code="insufficient_credits",
            status_code=402,
        )


# Plain SQL on the hot path (every job's submission and end). Table names come from the
# models, every value is a query parameter.
_LOCK_SQL = (
    f"SELECT user_id, available, held, earnings FROM {Balance._meta.db_table}"  # noqa: S608
    " WHERE user_id = ANY(%s::uuid[]) ORDER BY user_id FOR NO KEY UPDATE"
)


def lock_balances(*user_ids: object) -> dict[str, Balance]:
    """Lock the accounts' balances in primary-key order (created when missing)."""
    ids = sorted({str(uid) for uid in user_ids})

    def read() -> dict[str, Balance]:
        if connection.vendor != "postgresql":
            # SQLite (the embedded default) has no row locks; its IMMEDIATE transactions
            # (see settings) already serialise every writer.
            rows = Balance.objects.filter(user_id__in=ids).order_by("user_id")
            return {str(b.user_id): b for b in rows}
        with prepared.cursor() as cursor:
            cursor.execute(_LOCK_SQL, [ids])
            return {
                str(uid): Balance(user_id=uid, available=a, held=h, earnings=e)
                for uid, a, h, e in cursor.fetchall()
            }

    rows = read()
    if len(rows) < len(ids):
        Balance.objects.bulk_create(
            [Balance(user_id=uid) for uid in ids if uid not in rows], ignore_conflicts=True
        )
        rows = read()
    return rows


class Book:
    """Movements on locked balances, computed in memory and written at the end in one
    statement (:meth:`write`). A key already taken makes it fail, and with it the whole
    transaction: a movement is applied exactly once or not at all."""

    def __init__(self, balances: dict[str, Balance]):
        self.balances = balances
        self.entries: list[LedgerEntry] = []

    def move(
        self,
        user_id: object,
        kind: str,
        amount: Decimal,
        key: str,
        *,
        job_id: uuid.UUID | None = None,
        reason: str = "",
    ) -> LedgerEntry:
        balance = self.balances[str(user_id)]
        d_available, d_held, d_earnings = LedgerEntry.EFFECTS[kind]
        balance.available += d_available * amount
        balance.held += d_held * amount
        balance.earnings += d_earnings * amount
        entry = LedgerEntry(
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
        self.entries.append(entry)
        return entry

    def write(self) -> None:
        """Every balance and every entry in one statement (a data-modifying CTE): one
        round trip for a whole settlement."""
        if not self.entries:
            return
        moved = [(entry.kind, entry.amount) for entry in self.entries]
        transaction.on_commit(partial(metrics.ledger_moved, moved), robust=True)
        if connection.vendor != "postgresql":
            self._write_portably()
            return
        touched = [self.balances[uid] for uid in sorted({str(e.user_id) for e in self.entries})]
        params: list = []
        for b in touched:
            params += [str(b.user_id), b.available, b.held, b.earnings]
        for e in self.entries:
            params += [str(e.user_id), e.kind, e.amount, e.job_id and str(e.job_id),
                       e.idempotency_key, e.reason, e.available_after, e.held_after,
                       e.earnings_after, e.created_at]  # fmt: skip
        balance_rows = ", ".join(
            ["(%s::uuid, %s::numeric, %s::numeric, %s::numeric)"] * len(touched)
        )
        entry_rows = ", ".join([_ENTRY_ROW] * len(self.entries))
        with prepared.cursor() as cursor:  # a few shapes, each prepared once per connection
            cursor.execute(_WRITE_SQL.format(balances=balance_rows, entries=entry_rows), params)

    def _write_portably(self) -> None:
        """The same writes through the ORM, for databases other than Postgres."""
        touched = {str(e.user_id) for e in self.entries}
        Balance.objects.bulk_update(
            [self.balances[uid] for uid in sorted(touched)], ["available", "held", "earnings"]
        )
        LedgerEntry.objects.bulk_create(self.entries)


_ENTRY_COLUMNS = (
    "user_id, kind, amount, job_id, idempotency_key, reason, available_after, held_after, "
    "earnings_after, created_at"
)
_ENTRY_ROW = (
    "(%s::uuid, %s, %s::numeric, %s::uuid, %s, %s, %s::numeric, %s::numeric, %s::numeric, %s)"
)
_WRITE_SQL = (
    "WITH moved AS ("  # noqa: S608
    f" UPDATE {Balance._meta.db_table} AS b"
    " SET available = v.available, held = v.held, earnings = v.earnings"
    " FROM (VALUES {balances}) AS v (user_id, available, held, earnings)"
    " WHERE b.user_id = v.user_id)"
    f" INSERT INTO {LedgerEntry._meta.db_table} ({_ENTRY_COLUMNS}) VALUES {{entries}}"
)


def _apply(balance: Balance, *, key: str, **move: Any) -> LedgerEntry | None:
    """:meth:`Book.move` on a locked balance (``kind``, ``amount``, ``job_id``,
    ``reason``); None when the key was already applied."""
    if LedgerEntry.objects.filter(idempotency_key=key).exists():
        return None
    book = Book({str(balance.user_id): balance})
    entry = book.move(balance.user_id, key=key, **move)
    book.write()
    return entry


@transaction.atomic
def grant(*, user: User, amount: Decimal, reason: str, idempotency_key: str) -> LedgerEntry:
    """Add credits to an account (sign-up grant, admin grant). Idempotent by key."""
    balance = lock_balances(user.pk)[str(user.pk)]
    _apply(balance, kind=Kind.GRANT, amount=amount, key=idempotency_key, reason=reason)
    return LedgerEntry.objects.get(idempotency_key=idempotency_key)


def grant_starting_credits(*, user: User, **_: object) -> None:
    """A new account's starting grant (portal.signals.account_created, in its transaction)."""
    grant(
        user=user,
        amount=settings.STARTING_CREDITS,
        reason="Starting grant",
        idempotency_key=f"signup-grant:{user.pk}",
    )


@transaction.atomic
def adjust(*, user: User, amount: Decimal, reason: str, idempotency_key: str) -> LedgerEntry:
    """A signed correction by an admin; the available balance may not go below zero."""
    balance = lock_balances(user.pk)[str(user.pk)]
    if balance.available + amount < 0:
        raise InsufficientCredits(-amount, balance.available)
    _apply(balance, kind=Kind.ADJUSTMENT, amount=amount, key=idempotency_key, reason=reason)
    return LedgerEntry.objects.get(idempotency_key=idempotency_key)


# --- Jobs: hold on submit, then capture or release ----------------------------------
# One job's entries have fixed keys: ``hold:``, then either ``release:`` (no charge) or
# ``capture:`` + ``rest:`` (the unused part of the hold) + ``earning:`` + ``fee:``.
# All of them touch the consumer's balance first, so its row lock serializes every
# movement of one job; under that lock, the job's entries say what is already done.


def _hold_sql(*, checked: bool) -> str:
    """One statement that moves a hold on the balance and records it.

    ``checked``: the balance is checked in the statement. The row lock its UPDATE takes
    serializes concurrent holds of one account, each seeing what the previous one left;
    no row: not enough credits (or no balance row yet).

    Not checked: for a transaction that commits in the same round trip, so it may not
    fail by changing nothing. The balance's constraint (available_not_negative) refuses
    a hold larger than what is available, and a missing balance row makes an entry
    without an account, which its NOT NULL refuses; either error ends the whole
    transaction."""
    check = " AND available >= %(amount)s" if checked else ""
    rows = "b" if checked else "(SELECT 1) AS one LEFT JOIN b ON true"
    return (
        "WITH b AS ("  # noqa: S608
        f" UPDATE {Balance._meta.db_table}"
        " SET available = available - %(amount)s, held = held + %(amount)s"
        f" WHERE user_id = %(user)s{check}"
        " RETURNING user_id, available, held, earnings)"
        f" INSERT INTO {LedgerEntry._meta.db_table} ({_ENTRY_COLUMNS})"
        " SELECT user_id, %(kind)s, %(amount)s, %(job)s, %(key)s, '', available, held, earnings,"
        f" %(now)s FROM {rows} RETURNING id"
    )


_HOLD_SQL = _hold_sql(checked=True)
_HOLD_OR_FAIL_SQL = _hold_sql(checked=False)


def hold(*, user_id: object, job_id: uuid.UUID, amount: Decimal, new_job: bool = False) -> bool:
    """Reserve a job's worst-case price; raises InsufficientCredits (402) when the
    available balance is smaller. False if the job already had its hold.

    ``new_job``: the job was created in this transaction, so no earlier hold can exist;
    the lookup is skipped (the unique key would still refuse a second hold)."""
    if amount < 0:
        raise ValueError("a hold cannot be negative")
    key = f"hold:{job_id}"
    # No savepoint (this runs inside the submission's transaction); a refusal is raised
    # once the block is left cleanly, so a caller may still catch it and go on.
    with transaction.atomic(savepoint=False):
        if not new_job and LedgerEntry.objects.filter(idempotency_key=key).exists():
            return False
        if connection.vendor == "postgresql":
            params = {"user": str(user_id), "amount": amount, "kind": Kind.HOLD,
                      "job": str(job_id), "key": key, "now": timezone.now()}  # fmt: skip
            with prepared.cursor() as cursor:
                cursor.execute(_HOLD_SQL, params)
                if cursor.fetchone() is not None:
                    return True
        balance = lock_balances(user_id)[str(user_id)]  # a missing row, or not enough credits
        if balance.available >= amount:
            _apply(balance, kind=Kind.HOLD, amount=amount, key=key, job_id=job_id)
            return True
    raise InsufficientCredits(amount, balance.available)


_ENSURE_BALANCE_SQL = (
    f"INSERT INTO {Balance._meta.db_table} (user_id, available, held, earnings)"  # noqa: S608
    " VALUES (%s, 0, 0, 0) ON CONFLICT (user_id) DO NOTHING"
)
_AVAILABLE_SQL = f"SELECT available FROM {Balance._meta.db_table} WHERE user_id = %s"  # noqa: S608


async def hold_with(
    db: "tx.Db", first: "tx.Statement", *, user_id: object, job_id: uuid.UUID,
    amount: Decimal, available: Decimal | None = None, after: "tuple[tx.Statement, ...]" = (),
) -> None:  # fmt: skip
    """Run ``first`` (the insert of the job, created in this transaction) and the job's
    hold together, one round trip on Postgres; InsufficientCredits (402) when the
    available balance is smaller. The job is new, so no earlier hold can exist (the
    unique key would still refuse a second one). ``after``: statements that run once the
    hold is made (rows locked after the balance, as a job's end locks them).

    ``available``: the balance the caller read in this transaction. When it covers the
    hold, these are the transaction's last statements and go with its commit."""
    if amount < 0:
        raise ValueError("a hold cannot be negative")
    if connection.vendor != "postgresql":
        await db.one(first)
        await db.call(lambda: hold(user_id=user_id, job_id=job_id, amount=amount, new_job=True))
        if after:
            await db.run(*after)
        return
    params = {"user": str(user_id), "amount": amount, "kind": Kind.HOLD, "job": str(job_id),
              "key": f"hold:{job_id}", "now": timezone.now()}  # fmt: skip
    if available is not None and available >= amount:
        try:
            await db.commit_with(first, tx.raw(_HOLD_OR_FAIL_SQL, params), *after)
        except IntegrityError as exc:  # spent since it was read (it was read without a lock)
            if _constraint(exc) != "available_not_negative":
                raise
            raise InsufficientCredits(amount, available) from None
        return
    _, held = await db.run(first, tx.raw(_HOLD_SQL, params))
    if not held:
        # No balance row yet (an account made without the sign-up grant), or not enough.
        await db.one(tx.Statement(_ENSURE_BALANCE_SQL, [str(user_id)], tx.NOTHING))
        if not await db.one(tx.raw(_HOLD_SQL, params)):
            [(available,)] = await db.one(tx.raw(_AVAILABLE_SQL, [str(user_id)]))
            raise InsufficientCredits(amount, available)
    if after:
        await db.run(*after)


def _constraint(exc: IntegrityError) -> str | None:
    diag = getattr(exc.__cause__, "diag", None)
    return diag.constraint_name if diag is not None else None


def job_entries(job_id: uuid.UUID) -> dict[str, Decimal]:
    """The job's entries so far, ``{kind prefix of the key: amount}``."""
    return {key.split(":", 1)[0]: amount for key, amount in _entries_of_job.rows(job=job_id)}


# Run at every job's end: built once (core.prepared).
_entries_of_job = Prepared(
    lambda job: LedgerEntry.objects.filter(job_id=job).values_list("idempotency_key", "amount"),
    job=uuid.UUID,
)


def closed(entries: dict[str, Decimal]) -> bool:
    return "capture" in entries or "release" in entries
