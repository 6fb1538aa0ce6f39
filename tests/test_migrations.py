"""The migrations: they agree with the models, and each app's chain is squashed into one
that a database migrated through the old chain takes as already applied."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from config import run
from core.squashes import BEFORE_THE_SQUASH, half_applied

pytestmark = pytest.mark.django_db
APPS = ("portal", "billing", "compute", "pairing")


def test_the_models_need_no_migration_that_is_not_written():
    call_command("makemigrations", *APPS, check=True, dry_run=True, verbosity=0)


def test_a_database_migrated_through_the_old_chain_has_nothing_to_apply():
    squashed = [
        key
        for key, migration in MigrationExecutor(connection).loader.disk_migrations.items()
        if migration.replaces
    ]
    assert {app for app, _ in squashed} == {"portal", "billing", "compute"}
    recorded = MigrationRecorder.Migration.objects
    # What such a database has on record: the names the squashed migrations replace.
    for app, name in squashed:
        recorded.filter(app=app, name=name).delete()
    assert not recorded.filter(name__contains="squashed").exists()
    assert recorded.filter(app="compute", name="0010_market_from_billing").exists()

    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
    assert set(squashed) <= set(executor.loader.applied_migrations)


def test_a_database_that_stopped_part_way_through_the_old_chain_is_refused():
    recorded = MigrationRecorder.Migration.objects
    recorded.filter(name__contains="squashed").delete()
    recorded.filter(app="compute", name__gte="0006").delete()

    (problem,) = half_applied(MigrationLoader(connection))
    assert "compute.0001_squashed_0010_market_from_billing" in problem
    assert "stopped at compute.0005_job_queue_reason_and_deadline" in problem
    assert BEFORE_THE_SQUASH in problem
    with pytest.raises(CommandError, match=r"stopped at compute\.0005"):
        call_command("migrate", interactive=False, verbosity=0, skip_checks=False)
    with pytest.raises(SystemExit, match=r"stopped at compute\.0005"):
        run.migrate()


def test_a_whole_database_passes_the_check():
    assert half_applied(MigrationLoader(connection)) == []
    call_command("check", databases=["default"], verbosity=0)
