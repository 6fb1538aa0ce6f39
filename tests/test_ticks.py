"""Periodic tasks run once per tick however many beats send them (core.ticks): two of
a ticking task at once leave one effect."""

import inspect

import pytest
from django.conf import settings

from compute.models import RateSnapshot
from compute.tasks import snapshot_market_rates
from core import ticks
from tests.factories import CargoFactory
from tests.threads import at_once


@pytest.mark.django_db(transaction=True)
def test_two_beats_market_snapshots_of_one_tick_write_one_snapshot_per_cargo():
    cargos = [CargoFactory(is_approved=True, is_enabled=True) for _ in range(3)]

    results = at_once(2, lambda _: snapshot_market_rates(tick=300.0))

    assert sorted(results) == [0, len(cargos)]
    assert RateSnapshot.objects.filter(cargo__in=cargos).count() == len(cargos)


@pytest.mark.django_db(transaction=True)
def test_without_a_tick_each_call_runs():
    cargo = CargoFactory(is_approved=True, is_enabled=True)

    at_once(2, lambda _: snapshot_market_rates())

    assert RateSnapshot.objects.filter(cargo=cargo).count() == 2


def test_the_next_period_is_claimed_again(monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(ticks.time, "time", lambda: now[0])

    assert ticks.claim("test-tick", 5.0)
    assert not ticks.claim("test-tick", 5.0)
    now[0] += 5.0
    assert ticks.claim("test-tick", 5.0)
    assert ticks.claim("another-task", 5.0)


def test_beat_sends_every_periodic_task_with_its_period_as_its_tick():
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["kwargs"] == {"tick": float(entry["schedule"])}, name


@pytest.mark.parametrize("entry", sorted(settings.CELERY_BEAT_SCHEDULE))
def test_every_task_beat_sends_takes_what_beat_sends_it(entry):
    """Beat sends each task its ``tick``: a task without the parameter fails at every
    period, in the worker, where no request sees it."""
    from config.celery import app  # the tasks are registered once Django has loaded

    schedule = settings.CELERY_BEAT_SCHEDULE[entry]
    app.loader.import_default_modules()
    task = app.tasks[schedule["task"]]

    inspect.signature(task.run).bind(*schedule.get("args", ()), **schedule.get("kwargs", {}))
