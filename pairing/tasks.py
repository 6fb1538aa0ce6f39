"""Pairing's periodic tasks (settings.CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from pairing import services


@shared_task(ignore_result=True)
def forget_unpaired_keys() -> int:
    """Islands that a key asked a code for and nobody paired leave nothing behind."""
    return services.forget_unpaired_keys()
