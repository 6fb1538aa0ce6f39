"""Celery tasks that bring what the bridge collected from NATS into the database.

Each takes plain records (see :mod:`sail.handlers`) and the JetStream reply subjects of
their messages, and acks those only once the records are committed.
"""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from compute.services import islands
from sail.acks import ack

RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "max_retries": 8,
}


@shared_task(**RETRY)
def register_islands(records: list[dict], acks: list[str]) -> int:
    count = islands.register_islands(records=records)
    ack(acks)
    return count


@shared_task(**RETRY)
def ingest_heartbeats(records: list[dict] | str, acks: list[str]) -> int:
    count = islands.ingest_heartbeats(records=records)
    ack(acks)
    return count
