"""Reads of the Cargo catalog."""

from django.db.models import QuerySet

from compute.models import Cargo


def catalog(*, runtime_type: str | None = None, category: str | None = None) -> QuerySet[Cargo]:
    """Cargos that consumers may use: enabled and approved."""
    cargos = Cargo.objects.filter(is_enabled=True, is_approved=True)
    if runtime_type:
        cargos = cargos.filter(runtime_type=runtime_type)
    if category:
        cargos = cargos.filter(category=category)
    return cargos.order_by("category", "slug")


def usable_cargo(slug: str) -> Cargo | None:
    return Cargo.objects.filter(slug=slug, is_enabled=True, is_approved=True).first()
