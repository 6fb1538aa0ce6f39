import logging

from celery import shared_task

from billing import exchange, settlement

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, max_retries=0)
def snapshot_market_rates() -> int:
    return exchange.snapshot_rates()


@shared_task(acks_late=True, max_retries=0)
def settle_ended_jobs() -> int:
    fixed = settlement.release_holds_of_ended_jobs()
    if fixed:
        logger.warning("Settled %d job(s) whose hold outlived the job", fixed)
    return fixed
