"""A key's usage per UTC day (portal.models.ApiKeyDay), counted where it happens:

- a job, and its budget as ``credits_held``, in the submission's transaction
  (:func:`submitted`, with the job's insert and hold);
- its cost, tokens and the end of its hold in the transaction that ends it
  (:func:`record_end`), on the day it was submitted, so that a day's held credits
  return to zero when its jobs end;
- requests in Redis, by the rate-limit script that every authenticated request runs
  (core.counters), moved to the database once a minute (:func:`flush_requests`):
  requests are up to a minute behind, and counted on the day they are flushed.
"""

import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import redis
from django.db import connection, transaction
from django.utils import timezone

from core import tx
from core.counters import REQUESTS_HASH
from core.redis import redis_client
from portal.keys.limits import key_param, utc_day
from portal.models import ApiKey, ApiKeyDay

COUNTERS = ("requests", "jobs", "tokens", "credits_spent", "credits_held")
# Windows of GET /api/v1/api-keys/{id}/usage: days back from today (UTC), or "month".
WINDOWS = {"day": 1, "7d": 7, "30d": 30, "90d": 90, "month": None}


@cache
def _add_sql() -> str:
    table = ApiKeyDay._meta.db_table
    columns = ", ".join(COUNTERS)
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in COUNTERS)
    return (
        f"INSERT INTO {table} (key_id, day, {columns}) VALUES (%s, %s, %s, %s, %s, %s, %s)"  # noqa: S608
        f" ON CONFLICT (key_id, day) DO UPDATE SET {updates}"
    )


def adding(key_id: str, day: date, **counts: Any) -> tx.Statement:
    """Add ``counts`` (of :data:`COUNTERS`) to the key's day, in one statement."""
    values = [counts.get(name, 0) for name in COUNTERS]
    if connection.vendor != "postgresql":
        values = [str(v) if isinstance(v, Decimal) else v for v in values]
    return tx.Statement(_add_sql(), [key_param(key_id), day.isoformat(), *values], tx.NOTHING)


def submitted(key_id: str, budget: Decimal, now: datetime) -> tx.Statement:
    return adding(key_id, utc_day(now), jobs=1, credits_held=budget)


def record_end(*, key_id: object, created_at: datetime, budget: Decimal | None,
               charged: Decimal | None, tokens: int) -> None:  # fmt: skip
    """A job of the key ended (in the transaction that ended it)."""
    statement = adding(str(key_id), utc_day(created_at), tokens=tokens,
                       credits_spent=charged or Decimal(0), credits_held=-(budget or Decimal(0)))  # fmt: skip
    tx.sync(lambda db: db.one(statement))


def flush_requests() -> int:
    """Move the request counts Redis holds into the database; returns the keys counted."""
    client = redis_client()
    moving = f"{REQUESTS_HASH}:flushing:{uuid.uuid4().hex}"
    try:
        client.rename(REQUESTS_HASH, moving)  # atomic: later requests count afresh
    except redis.ResponseError:  # no such key: nothing counted since the last flush
        return 0
    try:
        counts = {_text(k): int(v) for k, v in client.hgetall(moving).items()}
        today = utc_day(timezone.now())
        known = sorted(str(pk) for pk in _existing_keys(counts))  # a key in order: no deadlock
        with transaction.atomic():
            for key_id in known:
                statement = adding(key_id, today, requests=counts[key_id])
                tx.sync(lambda db: db.one(statement))  # noqa: B023 (runs at once)
    finally:
        client.delete(moving)  # counts that could not be written are lost, not counted twice
    return len(known)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _existing_keys(counts: dict[str, int]) -> list:
    ids = []
    for key_id in counts:
        try:
            ids.append(uuid.UUID(key_id))
        except ValueError:
            continue
    return list(ApiKey.objects.filter(pk__in=ids).values_list("pk", flat=True))


# --- reading ----------------------------------------------------------------------------
def window_start(window: str, today: date) -> date:
    days = WINDOWS[window]
    return today.replace(day=1) if days is None else today - timedelta(days=days - 1)


def _totals(rows: list[dict]) -> dict:
    return {name: sum((row[name] for row in rows), 0) for name in COUNTERS}


def key_usage(key_id: uuid.UUID, window: str, *, now: datetime | None = None) -> dict:
    """The key's usage over ``window`` (:data:`WINDOWS`): totals and one entry per day
    (days without usage included, as zeros)."""
    today = utc_day(now or timezone.now())
    start = window_start(window, today)
    days = last_days([key_id], (today - start).days + 1, now=now)[key_id]
    return {"window": window, "start": start, "end": today, "totals": _totals(days), "days": days}


def summaries(key_ids: list, *, now: datetime | None = None) -> dict[Any, dict]:
    """Today's and this month's usage of each key, in one query."""
    today = utc_day(now or timezone.now())
    rows = ApiKeyDay.objects.filter(key_id__in=key_ids, day__gte=today.replace(day=1))
    found: dict[Any, dict] = {key_id: {"today": _zeros(), "month": _zeros()} for key_id in key_ids}
    for row in rows.values("key_id", "day", *COUNTERS):
        for period in ("month", "today") if row["day"] == today else ("month",):
            for name in COUNTERS:
                found[row["key_id"]][period][name] += row[name]
    return found


def _zeros() -> dict:
    return {name: Decimal(0) if name.startswith("credits") else 0 for name in COUNTERS}


def last_days(key_ids: list, days: int, *, now: datetime | None = None) -> dict[Any, list]:
    """Per key, ``days`` entries (oldest first) of its usage: for the /settings chart."""
    today = utc_day(now or timezone.now())
    start = today - timedelta(days=days - 1)
    series = {key_id: [_zeros() | {"day": start + timedelta(days=i)} for i in range(days)]
              for key_id in key_ids}  # fmt: skip
    rows = ApiKeyDay.objects.filter(key_id__in=key_ids, day__gte=start, day__lte=today)
    for row in rows.values("key_id", "day", *COUNTERS):
        series[row["key_id"]][(row["day"] - start).days].update(row)
    return series
