"""Reads of the Cargo catalog."""

from django.db.models import QuerySet

from compute.models import Cargo
from portal.prepared import Prepared


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
    """Read on every submission: the query is built once (portal.prepared)."""
    return _usable.first(slug=slug)
