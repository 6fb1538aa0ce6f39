"""The compute exchange: market snapshots, owners' asking prices, users' saved bids."""

import uuid
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing.services import CENT
from compute.capability import can_serve
from compute.models import AskingPrice, Cargo, Island, RateSnapshot, SavedBid
from compute.selectors.market import ask_of, ask_overrides, online_islands, surge_active
from core.errors import ApiError
from portal.models import User


def snapshot_rates() -> int:
    """Record avg/min/max ask and Island count per enabled Cargo; returns rows written."""

    islands = list(
        online_islands().only("id", "asking_prices", "runtimes", "capabilities", "status")
    )
    surge = surge_active()
    now = timezone.now()
    rows = []
    for cargo in Cargo.objects.filter(is_enabled=True, is_approved=True):
        overrides = ask_overrides(cargo)
        asks = [ask_of(i, cargo, overrides) for i in islands if can_serve(i, cargo)]
        reference = asks or [cargo.price_per_job]
        rows.append(
            RateSnapshot(
                cargo=cargo,
                avg_price=(sum(reference, Decimal(0)) / len(reference)).quantize(CENT),
                min_price=min(reference),
                max_price=max(reference),
                num_hosts=len(asks),
                surge=surge,
                created_at=now,
            )
        )
    RateSnapshot.objects.bulk_create(rows)
    return len(rows)


@transaction.atomic
def set_asking_prices(
    *, owner: User, island_id: uuid.UUID | str, prices: dict[str, Decimal]
) -> dict:
    """An Island owner's asks per Cargo slug; returns the asks now in force."""

    island = Island.objects.filter(pk=island_id, owner=owner).first()
    if island is None:
        raise ApiError("Island not found", code="not_found", status_code=404)
    cargos = {c.slug: c for c in Cargo.objects.filter(slug__in=list(prices))}
    unknown = sorted(set(prices) - set(cargos))
    if unknown:
        raise ApiError(
            f"Unknown Cargo: {', '.join(unknown)}",
            code="validation_error",
            status_code=422,
            details={"prices": [f"Unknown Cargo: {slug}" for slug in unknown]},
        )
    for slug, price in prices.items():
        AskingPrice.objects.update_or_create(
            island=island,
            cargo=cargos[slug],
            defaults={"price": price, "updated_at": timezone.now()},
        )
    asks = AskingPrice.objects.filter(island=island).select_related("cargo")
    return {ask.cargo.slug: str(ask.price) for ask in asks}


def save_bid(*, user: User, cargo_slug: str, bid: Decimal) -> None:
    cargo = Cargo.objects.filter(slug=cargo_slug, is_enabled=True).first()
    if cargo is None:
        raise ApiError("Cargo not found", code="not_found", status_code=404)
    SavedBid.objects.update_or_create(
        user=user, cargo=cargo, defaults={"bid": bid, "updated_at": timezone.now()}
    )
