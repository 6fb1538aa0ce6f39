"""Reads of Islands whose liveness is exact at the moment of the read.

The ``status`` column is kept by heartbeats and by the liveness sweep, which runs every
few seconds; between two sweeps an Island that went silent still says "online". These
reads derive the status from ``last_heartbeat_at`` instead, so a page is never wrong.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, Q, QuerySet, Value, When
from django.utils import timezone

from compute.models import Island, KarmaEvent

ONLINE, OFFLINE = Island.Status.ONLINE.value, Island.Status.OFFLINE.value


def offline_cutoff(now: datetime | None = None) -> datetime:
    """Heartbeats older than this no longer keep an Island online."""
    return (now or timezone.now()) - timedelta(seconds=settings.HEARTBEAT_OFFLINE_SECONDS)


def live_status(
    status: str, last_heartbeat_at: datetime | None, now: datetime | None = None
) -> str:
    alive = last_heartbeat_at is not None and last_heartbeat_at >= offline_cutoff(now)
    return ONLINE if status == ONLINE and alive else OFFLINE


def online_q(now: datetime | None = None) -> Q:
    return Q(status=ONLINE, last_heartbeat_at__gte=offline_cutoff(now))


def with_live_status(queryset: QuerySet[Island], now: datetime | None = None) -> QuerySet[Island]:
    """Annotate ``live_status`` ("online"/"offline") on every row."""
    return queryset.annotate(
        live_status=Case(When(online_q(now), then=Value(ONLINE)), default=Value(OFFLINE))
    )


def network_islands(*, status: str | None = None) -> QuerySet[Island]:
    """Islands as strangers may see them, optionally only the online or offline ones."""
    now = timezone.now()
    islands = with_live_status(Island.objects.all(), now).order_by("-karma", "id")
    if status == ONLINE:
        islands = islands.filter(online_q(now))
    elif status == OFFLINE:
        islands = islands.exclude(online_q(now))
    return islands


def karma_history(*, island: Island) -> QuerySet[KarmaEvent]:
    return KarmaEvent.objects.filter(island=island).order_by("-created_at", "-id")


def is_heard(now: datetime | None = None) -> bool:
    """Whether any heartbeat reached the database lately. When none did, the coordinator
    (bridge, broker or workers) is deaf, and silence says nothing about the Islands."""
    return Island.objects.filter(last_heartbeat_at__gte=offline_cutoff(now)).exists()
