"""Registration, batched heartbeats and liveness of Islands (compute.services.islands)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compute.handlers import as_json, parse_heartbeat, parse_register
from compute.models import Island, KarmaEvent
from compute.selectors.islands import network_islands
from compute.services import islands, karma
from compute.tasks import sweep_liveness
from tests.factories import IslandFactory
from tests.sail import messages


def beat(host_id, at: datetime | None = None, **extra) -> dict:
    payload = messages.heartbeat(str(host_id), **extra)
    return parse_heartbeat(messages.incoming(f"host.{host_id}.heartbeat", payload, at))


def registration(host_id, **extra) -> dict:
    payload = messages.register(str(host_id), **extra)
    return parse_register(messages.incoming("coordinator.hosts.register", payload))


@pytest.fixture
def island(user) -> Island:
    """A paired Island that has not been heard from yet."""
    return IslandFactory(owner=user, status="offline", last_heartbeat_at=None)


@pytest.fixture
def sent(monkeypatch) -> list:
    """The realtime events sent to browsers, as (user_id, event)."""
    events: list = []
    monkeypatch.setattr(islands, "send_to_user", lambda user_id, e: events.append((user_id, e)))
    return events


def test_registration_creates_an_unpaired_island(db):
    host_id = str(uuid.uuid4())
    assert islands.register_islands(records=[registration(host_id)]) == 1
    island = Island.objects.get(pk=host_id)
    assert island.owner is None
    assert island.name == f"island-{host_id[:8]}"
    assert island.region == "eu-west"
    assert island.agent_version == "0.9.1"
    assert island.capabilities["cpu_cores"] == 16


def test_registration_updates_a_paired_island_and_keeps_its_owner_and_name(island, user):
    record = registration(island.pk, name="ignored", version="1.0.0")
    record["capabilities"]["ram_mb"] = 131072
    islands.register_islands(records=[record, registration(island.pk)])
    island.refresh_from_db()
    assert island.owner == user
    assert island.name.startswith("island-")
    assert island.name != "ignored"
    assert island.agent_version == "0.9.1"  # the later registration of the batch wins


def test_registration_of_many_islands_takes_two_queries(db):
    records = [registration(uuid.uuid4()) for _ in range(200)]
    with CaptureQueriesContext(connection) as queries:
        islands.register_islands(records=records)
    assert len(queries) == 2  # the upsert, and names for rows a pairing request created
    assert Island.objects.count() == 200


def test_a_heartbeat_brings_an_island_online_with_its_latest_state(island):
    islands.ingest_heartbeats(records=[beat(island.pk)])
    island.refresh_from_db()
    assert island.status == "online"
    assert island.active_jobs == 1
    assert island.warm_workloads == ["llama-3-8b", 7]
    assert island.asking_prices == {"llama-3-8b": "0.02", "_default": "0.01"}
    assert island.runtimes == ["container", "llmcpp", "wasm"]
    assert island.max_concurrent_jobs == 2
    assert island.metrics["system"]["cpu_percent"] == 12.5
    assert timezone.now() - island.last_heartbeat_at < timedelta(seconds=5)


def test_liveness_comes_from_the_coordinators_clock_not_the_islands(island):
    received = datetime.now(UTC) - timedelta(seconds=3)
    islands.ingest_heartbeats(records=[beat(island.pk, at=received, timestamp=1)])
    island.refresh_from_db()
    assert island.last_heartbeat_at == received


def test_a_batch_of_heartbeats_takes_one_query_whatever_its_size(db):
    hosts = IslandFactory.create_batch(300, last_heartbeat_at=None)
    records = [beat(h.pk) for h in hosts]
    with CaptureQueriesContext(connection) as small:
        assert islands.ingest_heartbeats(records=records[:30]) == 30
    with CaptureQueriesContext(connection) as large:
        assert islands.ingest_heartbeats(records=records[30:]) == 270
    assert len(large) == len(small)
    statements = [q["sql"] for q in large if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 1
    assert "UPDATE" in statements[0]


def test_the_newest_heartbeat_of_a_batch_wins(island):
    now = datetime.now(UTC)
    older = beat(island.pk, at=now - timedelta(seconds=5), active_jobs=5)
    newer = beat(island.pk, at=now, active_jobs=2)
    islands.ingest_heartbeats(records=[newer, older])
    island.refresh_from_db()
    assert island.active_jobs == 2


def test_an_older_heartbeat_never_overwrites_a_newer_one(island):
    now = datetime.now(UTC)
    islands.ingest_heartbeats(records=[beat(island.pk, at=now, active_jobs=2)])
    assert islands.ingest_heartbeats(records=[beat(island.pk, at=now - timedelta(seconds=1))]) == 0
    islands.ingest_heartbeats(records=[beat(island.pk, at=now, active_jobs=7)])  # redelivered
    island.refresh_from_db()
    assert island.active_jobs == 2
    assert island.last_heartbeat_at == now


def test_sections_a_heartbeat_leaves_out_keep_their_last_value(island):
    islands.ingest_heartbeats(
        records=[beat(island.pk, at=datetime.now(UTC) - timedelta(seconds=1))]
    )
    minimal = {"host_id": str(island.pk), "status": "online", "active_jobs": 0}
    record = parse_heartbeat(messages.incoming(f"host.{island.pk}.heartbeat", minimal))
    islands.ingest_heartbeats(records=[record])
    island.refresh_from_db()
    assert island.asking_prices == {"llama-3-8b": "0.02", "_default": "0.01"}
    assert island.warm_workloads == ["llama-3-8b", 7]
    assert island.active_jobs == 0


def test_heartbeats_of_unknown_hosts_create_nothing(db):
    assert islands.ingest_heartbeats(records=[beat(uuid.uuid4())]) == 0
    assert Island.objects.count() == 0


def test_a_graceful_goodbye_marks_the_island_offline_at_once(island):
    islands.ingest_heartbeats(
        records=[beat(island.pk, at=datetime.now(UTC) - timedelta(seconds=1))]
    )
    islands.ingest_heartbeats(records=[beat(island.pk, status="offline", active_jobs=0)])
    island.refresh_from_db()
    assert island.status == "offline"
    assert island.offline_graceful is True
    assert island.went_offline_at == island.last_heartbeat_at
    assert network_islands().get(pk=island.pk).live_status == "offline"


def test_one_poisonous_heartbeat_does_not_hold_back_the_others(db):
    hosts = IslandFactory.create_batch(8, last_heartbeat_at=None)
    records = [beat(h.pk) for h in hosts]
    records[5]["agent_version"] = "x" * 80  # longer than the column: the database refuses
    assert islands.ingest_heartbeats(records=records) == 7
    assert Island.objects.filter(last_heartbeat_at__isnull=False).count() == 7


def test_the_portable_path_stores_the_same_as_the_postgres_one(db):
    a, b = IslandFactory.create_batch(2, last_heartbeat_at=None)
    at = datetime.now(UTC)
    same = {"timestamp": 1, "active_job_metrics": []}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(islands, "_store", islands._store_portable)
        islands.ingest_heartbeats(records=[beat(a.pk, at=at, **same)])
    islands.ingest_heartbeats(records=[beat(b.pk, at=at, **same)])
    fields = ["status", "active_jobs", "metrics", "warm_workloads", "asking_prices", "runtimes",
              "max_concurrent_jobs", "last_heartbeat_at", "offline_graceful"]  # fmt: skip
    rows = list(Island.objects.filter(pk__in=[a.pk, b.pk]).values(*fields))
    assert rows[0] == rows[1]


def test_the_owner_hears_when_an_island_goes_online_and_not_on_every_heartbeat(
    island, user, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        islands.ingest_heartbeats(
            records=[beat(island.pk, at=datetime.now(UTC) - timedelta(seconds=1))]
        )
    with django_capture_on_commit_callbacks(execute=True):
        islands.ingest_heartbeats(records=[beat(island.pk)])
    assert [(uid, e.status) for uid, e in sent] == [(user.pk, "online")]
    assert sent[0][1].island_id == str(island.pk)


def test_reads_are_exact_between_two_sweeps(island):
    stale = datetime.now(UTC) - timedelta(seconds=31)
    islands.ingest_heartbeats(records=[beat(island.pk, at=stale)])
    island.refresh_from_db()
    assert island.status == "online"  # the column lags until the next sweep...
    assert network_islands().get(pk=island.pk).live_status == "offline"  # ...reads do not
    assert not network_islands(status="online").exists()


def test_an_island_goes_online_then_offline_then_online_again(
    island, user, sent, django_capture_on_commit_callbacks
):
    now = datetime.now(UTC)
    with django_capture_on_commit_callbacks(execute=True):
        islands.ingest_heartbeats(records=[beat(island.pk, at=now - timedelta(seconds=40))])
        islands.ingest_heartbeats(records=[beat(island.pk, at=now - timedelta(seconds=31))])
    with django_capture_on_commit_callbacks(execute=True):
        assert islands.mark_stale_offline() == 1
    island.refresh_from_db()
    assert island.status == "offline"
    assert island.offline_graceful is False
    with django_capture_on_commit_callbacks(execute=True):
        islands.ingest_heartbeats(records=[beat(island.pk)])
    island.refresh_from_db()
    assert island.status == "online"
    assert island.went_offline_at is None
    assert [e.status for _, e in sent] == ["offline", "online"]


def test_the_sweep_leaves_live_islands_alone(island):
    islands.ingest_heartbeats(
        records=[beat(island.pk, at=datetime.now(UTC) - timedelta(seconds=25))]
    )
    assert islands.mark_stale_offline() == 0


def silent(island: Island, seconds: int, **fields) -> None:
    Island.objects.filter(pk=island.pk).update(
        last_heartbeat_at=timezone.now() - timedelta(seconds=seconds), **fields
    )


@pytest.fixture
def heard(db) -> Island:
    """Another Island that is heartbeating, so the coordinator is not deaf."""
    return IslandFactory()


@pytest.mark.usefixtures("heard")
def test_a_long_unannounced_disconnection_costs_karma_once(island, settings):
    settings.DISCONNECT_KARMA_PENALTY = 2
    Island.objects.filter(pk=island.pk).update(karma=5, pending_minutes=30)
    silent(island, 601, status="online")
    assert sweep_liveness() == {"offline": 1, "penalized": 1}
    assert sweep_liveness() == {"offline": 0, "penalized": 0}
    island.refresh_from_db()
    assert island.karma == 3
    event = KarmaEvent.objects.get(island=island)
    assert (event.delta, event.reason, event.karma_after, event.pending_minutes_after) == (
        -2, "disconnection", 3, 30
    )  # fmt: skip


@pytest.mark.usefixtures("heard")
def test_a_short_disconnection_costs_nothing(island):
    silent(island, 599, status="offline")
    assert karma.penalize_disconnections() == 0


@pytest.mark.usefixtures("heard")
def test_a_graceful_shutdown_costs_nothing_however_long(island):
    islands.ingest_heartbeats(records=[beat(island.pk, status="offline")])
    silent(island, 3600)
    assert sweep_liveness()["penalized"] == 0
    assert island.karma_events.count() == 0


@pytest.mark.usefixtures("heard")
def test_coming_back_makes_the_next_disconnection_count_again(island):
    silent(island, 700)
    assert karma.penalize_disconnections() == 1
    islands.ingest_heartbeats(records=[beat(island.pk)])
    silent(island, 700)
    assert karma.penalize_disconnections() == 1
    island.refresh_from_db()
    assert island.karma == -2


def test_nobody_is_penalized_while_the_coordinator_hears_no_island(island):
    silent(island, 3600)
    assert karma.penalize_disconnections() == 0


def test_completed_minutes_count_half_again_below_the_threshold(island):
    first = karma.credit_compute(island_id=island.pk, minutes=50)  # 75 minutes
    second = karma.credit_compute(island_id=island.pk, minutes=3)  # 4 minutes
    assert (first.delta, first.karma_after, first.pending_minutes_after) == (1, 1, 15)
    assert (second.delta, second.karma_after, second.pending_minutes_after) == (0, 1, 19)


def test_a_batch_sent_as_one_json_document_keeps_the_newest_of_each_host(island):
    now = datetime.now(UTC)
    document = as_json(
        [
            beat(island.pk, at=now, active_jobs=2),
            beat(island.pk, at=now - timedelta(seconds=5), active_jobs=5),
            beat(uuid.uuid4(), at=now),
        ]
    )
    assert islands.ingest_heartbeats(records=document) == 1
    island.refresh_from_db()
    assert island.active_jobs == 2
    assert island.last_heartbeat_at == now


def test_a_poisonous_heartbeat_in_a_json_document_is_singled_out(db):
    hosts = IslandFactory.create_batch(4, last_heartbeat_at=None)
    records = [beat(h.pk) for h in hosts]
    records[2]["agent_version"] = "x" * 80
    assert islands.ingest_heartbeats(records=as_json(records)) == 3
