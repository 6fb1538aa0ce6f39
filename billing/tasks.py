import logging

from celery import shared_task

from billing import exchange, settlement
from core import ticks

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, max_retries=0)
def snapshot_market_rates(tick: float = 0) -> int:
    """One snapshot per ``tick`` however many beats send it (core.ticks)."""
    if not ticks.claim("market-snapshot", tick):
        return 0
    return exchange.snapshot_rates()


@shared_task(acks_late=True, max_retries=0)
def settle_ended_jobs(tick: float = 0) -> int:
    if not ticks.claim("settle-ended-jobs", tick):
        return 0
    fixed = settlement.release_holds_of_ended_jobs()
    if fixed:
        logger.warning("Settled %d job(s) whose hold outlived the job", fixed)
    return fixed
