"""Your Islands (/settings/islands): cards, status, rename, unpair, query count."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from compute.models import Island
from pairing.models import PairingCode
from pairing.selectors import ago, is_online, karma_progress
from tests.factories import IslandFactory

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_a_card_shows_status_hardware_karma_jobs_earnings_and_heartbeat(browser_client, user):
    IslandFactory(
        owner=user,
        name="big-rig",
        karma=30,
        jobs_completed=41,
        jobs_failed=2,
        earnings=Decimal("12.5"),
        last_heartbeat_at=timezone.now() - timedelta(seconds=12),
    )
    response = browser_client.get("/settings/islands", **HTMX)
    page = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in page  # the fragment that /settings swaps in
    for text in ("big-rig", "Online", "RTX 4090", "24 GB", "16 GB", "41", "12.50 credits",
                 "12 s ago", "20% to 50", "Refresh Islands"):  # fmt: skip
        assert text in page, text


def test_opened_directly_it_is_a_whole_page(browser_client, user):
    IslandFactory(owner=user, name="big-rig")
    page = browser_client.get("/settings/islands").content.decode()
    assert "<html" in page
    assert "big-rig" in page


def test_it_shows_only_the_users_islands(browser_client, user, other_user):
    IslandFactory(owner=user, name="mine")
    IslandFactory(owner=other_user, name="theirs")
    page = browser_client.get("/settings/islands", **HTMX).content.decode()
    assert "mine" in page
    assert "theirs" not in page


def test_an_island_with_a_stale_heartbeat_is_offline(browser_client, user, settings):
    settings.HEARTBEAT_OFFLINE_SECONDS = 30
    IslandFactory(owner=user, last_heartbeat_at=timezone.now() - timedelta(seconds=31))
    page = browser_client.get("/settings/islands", **HTMX).content.decode()
    assert "island-status offline" in page


def test_status_is_exact_from_the_heartbeat_age_and_a_graceful_shutdown(settings):
    settings.HEARTBEAT_OFFLINE_SECONDS = 30
    now = timezone.now()
    fresh = Island(status="offline", last_heartbeat_at=now - timedelta(seconds=29))
    stale = Island(status="online", last_heartbeat_at=now - timedelta(seconds=31))
    signed_off = Island(
        status="offline", offline_graceful=True, last_heartbeat_at=now - timedelta(seconds=1)
    )
    assert is_online(fresh, now) is True
    assert is_online(stale, now) is False
    assert is_online(signed_off, now) is False


@pytest.mark.parametrize(
    ("karma", "level", "next_at", "percent"),
    [(-3, 0, 10, 0), (0, 0, 10, 0), (5, 0, 10, 50), (10, 1, 25, 0), (30, 2, 50, 20),
     (1000, 7, None, 100)],
)  # fmt: skip
def test_karma_progress_runs_to_the_next_level(karma, level, next_at, percent):
    progress = karma_progress(karma)
    assert (progress.level, progress.next_at, progress.percent) == (level, next_at, percent)


def test_heartbeat_age_reads_like_a_person_would_say_it():
    now = timezone.now()
    assert ago(None, now) == "never"
    assert ago(now - timedelta(seconds=12), now) == "12 s ago"
    assert ago(now - timedelta(minutes=5), now) == "5 min ago"
    assert ago(now - timedelta(hours=3), now) == "3 h ago"


def test_the_page_costs_the_same_queries_for_1_and_20_islands(
    browser_client, user, django_assert_max_num_queries
):
    IslandFactory(owner=user)
    with django_assert_max_num_queries(3) as one:
        browser_client.get("/settings/islands", **HTMX)
    IslandFactory.create_batch(19, owner=user)
    with django_assert_max_num_queries(len(one.captured_queries)):
        response = browser_client.get("/settings/islands", **HTMX)
    assert response.content.decode().count('class="island-card"') == 20


def test_renaming_returns_the_updated_card(browser_client, user):
    island = IslandFactory(owner=user, name="old")
    response = browser_client.post(
        f"/settings/islands/{island.pk}/rename", {"name": " new "}, **HTMX
    )
    assert response.status_code == 200
    assert ">new<" in response.content.decode()
    island.refresh_from_db()
    assert island.name == "new"


def test_renaming_refuses_an_empty_name(browser_client, user):
    island = IslandFactory(owner=user, name="old")
    response = browser_client.post(f"/settings/islands/{island.pk}/rename", {"name": "  "}, **HTMX)
    assert response.status_code == 400
    island.refresh_from_db()
    assert island.name == "old"


def test_unpairing_unbinds_the_island_and_revokes_its_token(
    browser_client, user, django_capture_on_commit_callbacks
):
    island = IslandFactory(owner=user, token_hash="abc", token_expires_at=timezone.now())
    PairingCode.objects.create(
        island=island, seed="s", code_hash="h", expires_at=timezone.now() + timedelta(minutes=5)
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = browser_client.post(f"/settings/islands/{island.pk}/unpair", **HTMX)
    assert response.status_code == 200
    assert island.name not in response.content.decode()
    island.refresh_from_db()
    assert (island.owner, island.paired_at, island.token_hash) == (None, None, "")
    assert PairingCode.objects.get().used_at is not None
    assert len(callbacks) == 2  # host.{id}.unpaired and its key's new connection


def test_nobody_can_rename_or_unpair_another_users_island(browser_client, other_user):
    island = IslandFactory(owner=other_user, name="theirs")
    assert (
        browser_client.post(f"/settings/islands/{island.pk}/rename", {"name": "x"}).status_code
        == 404
    )
    assert browser_client.post(f"/settings/islands/{island.pk}/unpair").status_code == 404
    island.refresh_from_db()
    assert island.owner == other_user
    assert island.name == "theirs"
