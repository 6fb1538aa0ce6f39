"""Reads of the Cargo catalog."""

import uuid

from django.db.models import Exists, OuterRef, QuerySet, Subquery

from compute.models import AskingPrice, Cargo, Job, RateSnapshot, SavedBid
from core.prepared import Prepared


def catalog(*, runtime_type: str | None = None, category: str | None = None) -> QuerySet[Cargo]:
    """Cargos that consumers may use: enabled and approved."""
    cargos = Cargo.objects.filter(is_enabled=True, is_approved=True)
    if runtime_type:
        cargos = cargos.filter(runtime_type=runtime_type)
    if category:
        cargos = cargos.filter(category=category)
    return cargos.order_by("category", "slug")


_usable = Prepared(
    lambda slug: Cargo.objects.filter(slug=slug, is_enabled=True, is_approved=True)[:1], slug=str
)


def usable_cargo(slug: str) -> Cargo | None:
    return _usable.first(slug=slug)


def _submission(slug: str, user: uuid.UUID, priority: int) -> QuerySet[Cargo]:
    here = OuterRef("pk")
    rate = RateSnapshot.objects.filter(cargo_id=here).order_by("-created_at")
    return Cargo.objects.filter(slug=slug, is_enabled=True, is_approved=True).annotate(
        saved_bid=Subquery(SavedBid.objects.filter(user_id=user, cargo_id=here).values("bid")),
        rate=Subquery(rate.values("avg_price")[:1]),
        rate_hosts=Subquery(rate.values("num_hosts")[:1]),
        queued_ahead=Exists(
            Job.objects.filter(status=Job.Status.QUEUED, cargo_id=here, priority__gte=priority)
        ),
        has_asks=Exists(AskingPrice.objects.filter(cargo_id=here)),
    )[:1]


# The usable Cargo ``slug`` and, in the same statement, what a submission of ``user`` at
# ``priority`` needs besides (a statement fewer is a round trip fewer on the path to the
# first token): ``saved_bid``, the latest ``rate`` and its ``rate_hosts``,
# ``queued_ahead`` (a queued job of this Cargo at that priority or higher: the new one
# must not overtake it) and ``has_asks`` (owners' API asks).
submission = Prepared(_submission, slug=str, user=uuid.UUID, priority=int)
