"""Pairing's periodic tasks (settings.CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from core import ticks
from pairing import services


@shared_task(ignore_result=True)
def forget_unpaired_keys(tick: float = 0) -> int:
    """Islands that a key asked a code for and nobody paired leave nothing behind."""
    if not ticks.claim("forget-unpaired-keys", tick):
        return 0
    return services.forget_unpaired_keys()
