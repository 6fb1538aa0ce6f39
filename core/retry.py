"""The one retry policy of the Celery tasks that write what others sent (the bridge's
records): a database that went away or refused a connection is tried again, backing off
up to 30 s, 8 times; anything else is a bug, logged once."""

from django.db import InterfaceError, OperationalError

RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "max_retries": 8,
}
