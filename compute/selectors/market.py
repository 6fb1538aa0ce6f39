"""Reads of the compute exchange (asks, bids, rate snapshots, demand, surge) and of what
each Island earned, as the ledger says."""

import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.cache import cache
from django.db.models import (
    Avg,
    Case,
    Count,
    DecimalField,
    F,
    Max,
    Min,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Trunc
from django.utils import timezone

from billing.models import LedgerEntry
from compute.capability import can_serve
from compute.models import AskingPrice, Cargo, Island, Job, RateSnapshot, SavedBid
from core.prepared import Prepared
from portal.models import User

SURGE_MULTIPLIER = Decimal("1.25")
SUGGESTED_BID_MULTIPLIER = Decimal("1.05")
HISTORY_WINDOWS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}


def online_islands() -> QuerySet[Island]:
    cutoff = timezone.now() - timedelta(seconds=settings.HEARTBEAT_OFFLINE_SECONDS)
    return Island.objects.filter(
        status=Island.Status.ONLINE, suspended=False, last_heartbeat_at__gte=cutoff
    )


def ask_of(island: Island, cargo: Cargo, overrides: dict | None = None) -> Decimal:
    """An Island's price for a Cargo: the owner's API ask, else the heartbeat's ask for
    the Cargo, else its ``_default`` ask, else the Cargo's list price."""
    if overrides and island.pk in overrides:
        return overrides[island.pk]
    prices = island.asking_prices if isinstance(island.asking_prices, dict) else {}
    raw = prices.get(cargo.slug, prices.get("_default"))
    try:
        ask = Decimal(str(raw)) if raw is not None else None
        # Not a price (negative, NaN, infinite): as if none was stated, the same rule
        # as placement's index. Prices keep the ledger's 6 places.
        if ask is None or not ask.is_finite() or ask < 0:
            return cargo.price_per_job
        return ask.quantize(Decimal("0.000001")) if ask < 10**12 else ask
    except ArithmeticError:
        return cargo.price_per_job


# Read on every submission: built once (core.prepared).
ask_rows = Prepared(  # the owners' API asks of a Cargo: (island_id, price)
    lambda cargo: AskingPrice.objects.filter(cargo_id=cargo).values_list("island_id", "price"),
    cargo=int,
)
_latest_rate = Prepared(
    lambda cargo: (
        RateSnapshot.objects.filter(cargo_id=cargo)
        .order_by("-created_at")
        .values_list("avg_price", "num_hosts")[:1]
    ),
    cargo=int,
)
_saved_bid = Prepared(
    lambda user, cargo: SavedBid.objects.filter(user_id=user, cargo_id=cargo).values_list("bid"),
    user=uuid.UUID,
    cargo=int,
)


def ask_overrides(cargo: Cargo) -> dict:
    return dict(ask_rows.rows(cargo=cargo.pk))


# Counted over the whole network (every completed job, every queued one): the same for
# everyone who asks, so counted once per this many seconds for all of them.
SHARED_COUNTS_SECONDS = 10
T = TypeVar("T")


def _shared(key: str, count: Callable[[], T], *, seconds: int = SHARED_COUNTS_SECONDS) -> T:
    """``count()``, kept ``seconds`` in the cache for every process that asks."""
    return cast(T, cache.get_or_set(key, count, timeout=seconds))


def surge_active() -> bool:
    """Queued jobs exceed twice the free capacity of the online Islands (cached 30 s)."""

    def compute() -> bool:
        queued = Job.objects.filter(status=Job.Status.QUEUED).count()
        if not queued:
            return False
        free = 0
        for max_jobs, active in online_islands().values_list("max_concurrent_jobs", "active_jobs"):
            free += max(0, max_jobs - active)
        return queued > 2 * free

    return _shared("market:surge", compute, seconds=30)


def newest_snapshot_id() -> int | None:
    """Grows with every snapshot taken (on the primary key's index)."""
    return RateSnapshot.objects.aggregate(newest=Max("pk"))["newest"]


def latest_snapshots() -> dict[int, RateSnapshot]:
    """Each Cargo's latest snapshot of the last day, found on the (cargo, -created_at)
    index: not every snapshot of the day read to keep one per Cargo (288 of each)."""
    since = timezone.now() - timedelta(days=1)
    newest = (
        RateSnapshot.objects.filter(cargo_id=OuterRef("pk"), created_at__gte=since)
        .order_by("-created_at")
        .values("pk")[:1]
    )
    ids = Cargo.objects.annotate(newest=Subquery(newest)).filter(newest__isnull=False)
    snaps = RateSnapshot.objects.filter(pk__in=ids.values("newest")).select_related("cargo")
    return {snap.cargo_id: snap for snap in snaps}


def _with_surge(
    avg_price: Decimal | None, num_hosts: int | None, surge: bool | None = None
) -> Decimal | None:
    if avg_price is None or not num_hosts:
        return None
    surge = surge_active() if surge is None else surge
    return avg_price * (SURGE_MULTIPLIER if surge else 1)


def budget_for(*, user: User, cargo: Cargo, bid: Decimal | None = None) -> Decimal:
    """The most a job may cost, in product-notes' order: the job's bid, the user's saved
    bid for the Cargo, the market rate, the Cargo's price."""
    if bid is not None:
        return bid
    saved = _saved_bid.first(user=user.pk, cargo=cargo.pk)
    rate, hosts = _latest_rate.first(cargo=cargo.pk) or (None, None)
    return budget_of(cargo, bid=None, saved_bid=saved and saved[0], rate=rate, rate_hosts=hosts)


def budget_of(
    cargo: Cargo,
    *,
    bid: Decimal | None,
    saved_bid: Decimal | None,
    rate: Decimal | None,
    rate_hosts: int | None,
    surge: bool | None = None,
) -> Decimal:
    """:func:`budget_for` from values already read (the latest snapshot's average price
    and number of Islands; compute.selectors.cargos.submission reads them all, and
    ``surge``, :func:`surge_active`, when known)."""
    if bid is not None:
        return bid
    if saved_bid is not None:
        return saved_bid
    return _with_surge(rate, rate_hosts, surge) or cargo.price_per_job


def present_rate(snap: RateSnapshot, *, surge: bool = False) -> dict:
    factor = SURGE_MULTIPLIER if surge else Decimal(1)
    prices = (snap.avg_price * factor, snap.min_price * factor, snap.max_price * factor)
    return _rate_row(snap.cargo.slug, *prices, snap.num_hosts, snap.created_at, surge=surge)


def _rate_row(
    slug: str, avg: Decimal, low: Decimal, high: Decimal, hosts: int, at: Any, *, surge: bool
) -> dict:
    """A rate as the API writes it (a snapshot's, or a bucket's of the history)."""
    return {
        "workload_slug": slug,
        "avg_price": str(avg),
        "min_price": str(low),
        "max_price": str(high),
        "num_hosts": hosts,
        "suggested_bid": str(avg * SUGGESTED_BID_MULTIPLIER),
        "surge": surge,
        "timestamp": at,
    }


def network_stats() -> dict:
    def count() -> dict:
        online = online_islands()
        regions = sorted(r for r in online.values_list("region", flat=True).distinct() if r)
        return {
            "online_islands": online.count(),
            "regions": regions,
            "jobs_completed": Job.objects.filter(status=Job.Status.COMPLETED).count(),
        }

    return _shared("network:stats", count)


def demand() -> dict[int, tuple[int, int]]:
    """Each Cargo's queued jobs and the jobs it completed in the last hour."""

    def per_cargo(jobs: QuerySet[Job]) -> dict[int, int]:
        return dict(jobs.values_list("cargo_id").annotate(n=Count("pk")).order_by())

    def count() -> dict[int, tuple[int, int]]:
        since = timezone.now() - timedelta(hours=1)
        queued = per_cargo(Job.objects.filter(status=Job.Status.QUEUED))
        recent = per_cargo(Job.objects.filter(status=Job.Status.COMPLETED, completed_at__gte=since))
        return {c: (queued.get(c, 0), recent.get(c, 0)) for c in queued.keys() | recent.keys()}

    return _shared("market:demand", count)


def recommendations(*, island: Island) -> list[dict]:
    """Cargos this Island can serve, by demand: queued * 10 + recent_completions * 2."""

    demanded = demand()
    rows = []
    for cargo in Cargo.objects.filter(is_enabled=True, is_approved=True):
        if not can_serve(island, cargo):
            continue
        queued, recent = demanded.get(cargo.pk, (0, 0))
        earned = ask_of(island, cargo) * (1 - settings.PLATFORM_FEE_RATE)
        rows.append(
            {
                "workload_slug": cargo.slug,
                "model_url": cargo.spec.get("model_url"),
                "model_hash": cargo.spec.get("model_hash"),
                "runtime_type": cargo.runtime_type,
                "estimated_earnings_per_job": str(earned.normalize()),
                "queued_demand": queued,
                "demand_score": queued * 10 + recent * 2,
            }
        )
    rows.sort(key=lambda row: (-row["demand_score"], row["workload_slug"]))
    return rows


# --- Rate history (the API and the Exchange page) ----------------------------------------

# A point per bucket keeps a 30-day history at 30 points (8,640 snapshots, one per 5 min).
HISTORY_BUCKETS = {"1h": "minute", "24h": "hour", "7d": "hour", "30d": "day"}


def rate_histories(*, window: str, cargo: int | None = None) -> dict[int, list[dict[str, Any]]]:
    """Every Cargo's rates in the window (or one Cargo's), one row per bucket: ``at``,
    ``avg``, ``low``, ``high``, ``hosts``; in one query."""
    since = timezone.now() - HISTORY_WINDOWS[window]
    snapshots = RateSnapshot.objects.filter(created_at__gte=since)
    if cargo is not None:
        snapshots = snapshots.filter(cargo_id=cargo)
    rows = (
        snapshots.annotate(at=Trunc("created_at", HISTORY_BUCKETS[window]))
        .values("cargo_id", "at")
        .annotate(
            avg=Avg("avg_price"),
            low=Min("min_price"),
            high=Max("max_price"),
            hosts=Max("num_hosts"),
        )
        .order_by("cargo_id", "at")
    )
    histories: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        row["at"] = max(row["at"], since)  # a bucket may start before the window
        row["avg"] = Decimal(str(row["avg"])).quantize(Decimal("0.000001"))
        histories.setdefault(row["cargo_id"], []).append(dict(row))
    return histories


def present_bucket(slug: str, row: dict[str, Any]) -> dict:
    """A row of :func:`rate_histories` in :func:`present_rate`'s shape."""
    prices = (row["avg"], row["low"], row["high"])
    return _rate_row(slug, *prices, row["hosts"], row["at"], surge=False)


# --- Pages: the credit history ------------------------------------------------------------


def island_earnings(*, user: User) -> QuerySet[Any, Any]:
    """The user's Islands ({id, name, karma, net_earnings}) with ``net_earnings``: the earning entries of the jobs each ran,
    minus their fees, read from the ledger (so the page adds up to the balance)."""
    net = Case(When(kind=LedgerEntry.Kind.FEE, then=-F("amount")), default=F("amount"))
    per_island = (
        LedgerEntry.objects.filter(
            user=OuterRef("owner_id"),
            kind__in=[LedgerEntry.Kind.EARNING, LedgerEntry.Kind.FEE],
            job_id__in=Job.objects.filter(island_id=OuterRef(OuterRef("pk"))).values("id"),
        )
        .order_by()
        .values("user")
        .annotate(total=Sum(net))
        .values("total")
    )
    zero = Value(Decimal(0), output_field=DecimalField(max_digits=20, decimal_places=6))
    return (
        Island.objects.filter(owner=user)
        .annotate(net_earnings=Coalesce(Subquery(per_island), zero))
        .order_by("name", "id")
        .values("id", "name", "karma", "net_earnings")
    )
