"""The public Exchange page and the credit history section of /settings (its Islands'
earnings read compute's jobs). Thin callers of compute.selectors.market and
billing.selectors; htmx requests get the partial they swap in."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.functional import SimpleLazyObject
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_htmx.middleware import HtmxDetails

from billing import selectors as ledger
from billing.models import LedgerEntry
from compute.charts import price_chart
from compute.models import Cargo
from compute.selectors import market
from portal.models import User

DEFAULT_WINDOW = "24h"
WINDOW_LABELS = {"1h": "1 hour", "24h": "24 hours", "7d": "7 days", "30d": "30 days"}
ENTRIES_PER_PAGE = 20


class PageRequest(HttpRequest):
    """What django-htmx's middleware (and login_required, on signed-in pages) guarantee."""

    user: User
    htmx: HtmxDetails


def _wants_partial(request: PageRequest) -> bool:
    # htmx asks for the whole page when it restores history it has no snapshot of.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _partial_or_page(request: PageRequest, partial: str, page: str, context: dict):
    response = render(request, partial if _wants_partial(request) else page, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- /exchange --------------------------------------------------------------------------


def _rates() -> list[dict]:
    surge = market.surge_active()
    snaps = market.latest_snapshots().values()
    rows = [{**market.present_rate(s, surge=surge), "name": s.cargo.name} for s in snaps]
    return sorted(rows, key=lambda row: row["workload_slug"])


def _histories(window: str) -> list[dict]:
    end = timezone.now()
    start = end - market.HISTORY_WINDOWS[window]
    histories = market.rate_histories(window=window)
    cargos = Cargo.objects.filter(pk__in=list(histories), is_enabled=True, is_approved=True)
    return [
        {
            "cargo": cargo,
            "rows": histories[cargo.pk],
            "chart": price_chart(histories[cargo.pk], start=start, end=end, window=window),
        }
        for cargo in cargos.only("id", "slug", "name").order_by("slug")
    ]


@require_GET
def exchange(request: PageRequest) -> HttpResponse:
    window = request.GET.get("window", DEFAULT_WINDOW)
    if window not in market.HISTORY_WINDOWS:
        window = DEFAULT_WINDOW
    context: dict[str, Any] = {
        "window": window,
        "window_label": WINDOW_LABELS[window],
        "windows": WINDOW_LABELS,
        # The charts and their tables are the same for every visitor, and a week of them
        # costs ~50 ms per Cargo: the template keeps them a minute per window and newest
        # snapshot, and reads the histories only when it writes them.
        "histories": SimpleLazyObject(lambda: _histories(window)),
        "newest_snapshot": market.newest_snapshot_id(),
    }
    if not _wants_partial(request):
        context |= {"rates": _rates(), "stats": market.network_stats()}
    return _partial_or_page(
        request, "billing/_price_history.html", "billing/exchange.html", context
    )


# --- /settings/credits ------------------------------------------------------------------


@dataclass(frozen=True)
class EntryRow:
    """A ledger entry as the history shows it: signed from the account's point of view,
    with the bucket it moves when that is not the available balance."""

    entry: LedgerEntry
    sign: str
    magnitude: Decimal
    bucket: str

    @classmethod
    def of(cls, entry: LedgerEntry) -> "EntryRow":
        d_available, d_held, d_earnings = LedgerEntry.EFFECTS[LedgerEntry.Kind(entry.kind)]
        direction = (d_available or d_earnings or d_held) * entry.amount
        bucket = "" if d_available else "earnings" if d_earnings else "held"
        return cls(
            entry=entry,
            sign="+" if direction >= 0 else "\u2212",
            magnitude=abs(entry.amount),
            bucket=bucket,
        )


def _earnings(user: User, total: Decimal) -> dict:
    threshold = settings.KARMA_MONETIZATION_THRESHOLD
    islands = [
        {**island, "payouts_unlocked": island["karma"] >= threshold}
        for island in market.island_earnings(user=user)
    ]
    # Earnings of Islands since unpaired still count in the balance: show them apart.
    elsewhere = total - sum((i["net_earnings"] for i in islands), Decimal(0))
    return {"islands": islands, "elsewhere": elsewhere, "threshold": threshold}


@never_cache
@login_required
@require_GET
def credit_history(request: PageRequest) -> HttpResponse:
    balance = ledger.balance_of(user=request.user)
    paginator = Paginator(ledger.ledger_entries(user=request.user), ENTRIES_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    context = {
        "balance": balance,
        "page": page,
        "rows": [EntryRow.of(entry) for entry in page],
        **_earnings(request.user, balance.earnings),
    }
    return _partial_or_page(
        request, "billing/_credit_history.html", "billing/credit_history_page.html", context
    )
