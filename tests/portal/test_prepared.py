"""Queries built once and run again (core.prepared): the same rows, values and writes
as the ORM's."""

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Count
from django.utils import timezone

from compute.models import Cargo, Job
from core import prepared
from core.prepared import Prepared
from tests.factories import CargoFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_prepared_query_gives_the_orms_instances_with_their_field_conversions():
    cargo = CargoFactory(slug="prep", spec={"image": "x"}, price_per_job=Decimal("0.25"))
    by_slug = Prepared(lambda slug: Cargo.objects.filter(slug=slug)[:1], slug=str)
    found = by_slug.first(slug="prep")
    assert (found.pk, found.spec, found.price_per_job) == (
        cargo.pk,
        {"image": "x"},
        Decimal("0.25"),
    )
    assert by_slug.first(slug="other") is None
    assert by_slug.first(slug="prep").pk == cargo.pk  # run again, built once


def test_values_rows_and_uuid_and_datetime_parameters():
    user = UserFactory()
    cargo = CargoFactory()
    old = Job.objects.create(user=user, cargo=cargo, status="running")
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))
    Job.objects.create(user=user, cargo=cargo, status="running")
    recent = Prepared(
        lambda user, since: (
            Job.objects.filter(user_id=user, created_at__gte=since)
            .order_by()
            .values("user_id")
            .annotate(n=Count("pk"))
            .values_list("n")
        ),
        user=uuid.UUID,
        since=datetime,
    )
    assert recent.rows(user=user.pk, since=timezone.now() - timedelta(hours=1)) == [(1,)]
    assert recent.rows(user=user.pk, since=timezone.now() - timedelta(hours=3)) == [(2,)]
    assert recent.rows(user=uuid.uuid4(), since=timezone.now()) == []
    # an id as the text NATS messages carry finds the same rows
    assert recent.rows(user=str(user.pk), since=timezone.now() - timedelta(hours=3)) == [(2,)]
    with pytest.raises(ValueError, match="UUID"):
        recent.rows(user="not-a-uuid", since=timezone.now())


def test_a_parameter_the_sql_holds_twice_is_refused_when_built():
    twice = Prepared(lambda slug: Cargo.objects.filter(slug=slug, name=slug), slug=str)
    with pytest.raises(ValueError, match="appears 2 times"):
        twice.rows(slug="x")


def test_insert_writes_the_row_save_would_write():
    user, cargo = UserFactory(), CargoFactory()
    job = Job(user=user, cargo=cargo, input={"prompt": "hi"}, budget=Decimal("0.01"))
    prepared.insert(job)
    stored = Job.objects.get(pk=job.pk)
    assert (stored.input, stored.budget, stored.status, stored.excluded_islands) == (
        {"prompt": "hi"}, Decimal("0.010000"), "pending", [],
    )  # fmt: skip
    assert stored.created_at == job.created_at
    assert not job._state.adding


def test_update_changes_only_the_rows_that_match_and_counts_them():
    user, cargo = UserFactory(), CargoFactory()
    waiting = Job.objects.create(user=user, cargo=cargo, status="queued")
    done = Job.objects.create(user=user, cargo=cargo, status="completed")
    where = {"pk": waiting.pk, "status__in": frozenset({"pending", "queued"})}
    assert prepared.update(Job, where, {"status": "running", "attempts": 1}) == 1
    assert prepared.update(Job, {**where, "pk": done.pk}, {"status": "running"}) == 0
    waiting.refresh_from_db()
    done.refresh_from_db()
    assert (waiting.status, waiting.attempts, done.status) == ("running", 1, "completed")


def test_an_update_only_where_a_field_is_still_null_happens_once():
    job = Job.objects.create(user=UserFactory(), cargo=CargoFactory(), status="running")
    first, later = timezone.now() - timedelta(seconds=5), timezone.now()
    where = {"pk": job.pk, "started_at__isnull": True}
    assert prepared.update(Job, where, {"started_at": first}) == 1
    assert prepared.update(Job, where, {"started_at": later}) == 0
    job.refresh_from_db()
    assert job.started_at == first
    with pytest.raises(ValueError, match="must be True"):
        prepared.update(Job, {"pk": job.pk, "started_at__isnull": False}, {"started_at": later})


def test_an_update_only_where_a_field_is_below_a_value_never_lowers_it():
    now = timezone.now()
    job = Job.objects.create(
        user=UserFactory(), cargo=CargoFactory(), status="running", lease_expires_at=now
    )
    later, sooner = now + timedelta(seconds=60), now + timedelta(seconds=5)
    assert prepared.update(Job, {"pk": job.pk, "lease_expires_at__lt": later},
                           {"lease_expires_at": later}) == 1  # fmt: skip
    assert prepared.update(Job, {"pk": job.pk, "lease_expires_at__lt": sooner},
                           {"lease_expires_at": sooner}) == 0  # fmt: skip
    job.refresh_from_db()
    assert job.lease_expires_at == later
