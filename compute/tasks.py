"""Periodic upkeep of the Islands (scheduled in settings.CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from compute.services import islands, karma


@shared_task(max_retries=0)
def sweep_liveness() -> dict[str, int]:
    """Mark silent Islands offline, then penalize long unannounced disconnections."""
    return {
        "offline": islands.mark_stale_offline(),
        "penalized": karma.penalize_disconnections(),
    }
