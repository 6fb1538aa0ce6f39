"""A Celery worker keeps its database connections from task to task, as Django keeps
them from request to request (CONN_MAX_AGE, health checks): Celery's own fixup would
open a new Postgres session (and prepare the job path's statements again) for each task."""

import time

import pytest
from celery import signals
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from compute.tasks import dispatch_queued_task
from config.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker_signals():
    """The signal handlers a worker process has: Celery's Django fixup and ours."""
    fixup = DjangoWorkerFixup(app).install()
    yield lambda: [
        signal.send(sender=dispatch_queued_task, task_id="t", task=dispatch_queued_task)
        for signal in (signals.task_prerun, signals.task_postrun)
    ]
    signals.task_prerun.disconnect(fixup.on_task_prerun)
    signals.task_postrun.disconnect(fixup.on_task_postrun)
    signals.worker_process_init.disconnect(fixup.on_worker_process_init)
    signals.beat_embedded_init.disconnect(fixup.close_database)


def test_a_connection_outlives_the_task(worker_signals):
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        session = cursor.fetchone()[0]
    for _ in range(3):
        worker_signals()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == session


def test_an_obsolete_connection_is_closed_after_the_task(worker_signals):
    connection.ensure_connection()
    connection.close_at = time.monotonic() - 1  # older than CONN_MAX_AGE allows
    worker_signals()
    assert connection.connection is None
