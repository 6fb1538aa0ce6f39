"""A key's limits, checked where they can be kept: its expiry and client addresses where
the request is authenticated (portal.api.auth), its Cargos before a submission, its spend
caps and jobs per minute inside the submission's transaction (compute.services.submission).

The last two are read after the account's row lock that serialises the account's
submissions (a statement of their own, so with a snapshot taken once the lock is held):
of two concurrent requests, the second sees the first's job and hold, and a cap cannot be
passed by both. A key without caps costs the submission no statement at all."""

import ipaddress
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache

from django.apps import apps
from django.db import connection

from core import tx
from core.errors import ApiError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
RATE_WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class KeyLimits:
    key_id: str
    spend_cap_day: Decimal | None = None
    spend_cap_month: Decimal | None = None
    spend_cap_total: Decimal | None = None
    jobs_per_minute: int | None = None
    allowed_cargos: frozenset[str] = frozenset()
    allowed_ips: tuple[IpNetwork, ...] = ()

    @property
    def counted(self) -> bool:
        """Whether a submission must read the key's usage (it has a cap)."""
        caps = (self.spend_cap_day, self.spend_cap_month, self.spend_cap_total)
        return self.jobs_per_minute is not None or any(cap is not None for cap in caps)


def networks(values: list[str] | tuple[str, ...]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def check_address(limits: KeyLimits, ip: str) -> None:
    """403 ``ip_not_allowed`` unless the key may be used from ``ip``."""
    if not limits.allowed_ips:
        return
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        address = None
    if address is None or not any(address in network for network in limits.allowed_ips):
        raise ApiError(
            "This API key may not be used from this address",
            code="ip_not_allowed",
            status_code=403,
        )


def check_cargo(limits: KeyLimits, workload: str) -> None:
    """403 ``cargo_not_allowed`` unless the key may run ``workload``."""
    if limits.allowed_cargos and workload not in limits.allowed_cargos:
        raise ApiError(
            f"This API key may not run {workload}",
            code="cargo_not_allowed",
            status_code=403,
            allowed=sorted(limits.allowed_cargos),
        )


@cache
def _usage_sql() -> str:
    day = apps.get_model("portal", "ApiKeyDay")._meta.db_table
    job = apps.get_model("compute", "Job")._meta.db_table
    spent = "credits_spent + credits_held"
    return (
        f"SELECT COALESCE(SUM(CASE WHEN day = %s THEN {spent} ELSE 0 END), 0),"  # noqa: S608
        f" COALESCE(SUM(CASE WHEN day >= %s THEN {spent} ELSE 0 END), 0),"
        f" COALESCE(SUM({spent}), 0),"
        f" (SELECT COUNT(*) FROM {job} WHERE api_key_id = %s AND created_at > %s),"
        f" (SELECT MIN(created_at) FROM {job} WHERE api_key_id = %s AND created_at > %s)"
        f" FROM {day} WHERE key_id = %s"
    )


def key_param(key_id: str) -> str:
    """A key's id as a parameter of raw SQL (SQLite stores UUIDs as hex text)."""
    value = uuid.UUID(key_id)
    return str(value) if connection.vendor == "postgresql" else value.hex


def usage_statement(limits: KeyLimits, now: datetime) -> tx.Statement:
    """What the key spent (today, this month, in all; running jobs count their budget)
    and its jobs of the last minute: one row for :func:`check_usage`."""
    today = now.astimezone(UTC).date()
    since = connection.ops.adapt_datetimefield_value(now - RATE_WINDOW)
    key = key_param(limits.key_id)
    params = [today.isoformat(), today.replace(day=1).isoformat(), key, since, key, since, key]
    return tx.raw(_usage_sql(), params)


def check_usage(limits: KeyLimits, rows: list, budget: Decimal, now: datetime) -> None:
    """402 ``key_spend_cap`` when the job's budget would take the key past a spend cap,
    429 ``key_job_rate`` when it already submitted its jobs of the minute."""
    day, month, total, recent, oldest = rows[0]
    if limits.jobs_per_minute is not None and recent >= limits.jobs_per_minute:
        if isinstance(oldest, str):  # SQLite answers raw SQL with text
            oldest = datetime.fromisoformat(oldest).replace(tzinfo=UTC)
        wait = (oldest + RATE_WINDOW - now).total_seconds() if oldest else 1
        raise ApiError(
            f"This API key may submit {limits.jobs_per_minute} jobs per minute",
            code="key_job_rate",
            status_code=429,
            limit=limits.jobs_per_minute,
            retry_after=max(1, math.ceil(wait)),
        )
    windows = (
        ("day", limits.spend_cap_day, day),
        ("month", limits.spend_cap_month, month),
        ("total", limits.spend_cap_total, total),
    )
    for window, cap, spent in windows:
        spent = Decimal(str(spent))
        if cap is not None and spent + budget > cap:
            raise ApiError(
                f"This job (budget {budget}) would take the API key past its {window} spend"
                f" cap ({spent} of {cap} credits used)",
                code="key_spend_cap",
                status_code=402,
                window=window,
                cap=float(cap),
                spent=float(spent),
                budget=float(budget),
            )


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()
