"""Islands on the network: registration, heartbeats and liveness.

Heartbeats arrive by the thousand per second, so they are stored a batch at a time:
one ``UPDATE ... FROM unnest(...)`` on Postgres whatever the batch size (a portable
``bulk_update`` elsewhere). Handling the same batch twice changes nothing: a heartbeat
only wins over an older one, by the coordinator's receive time.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import orjson
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from compute.events import IslandStatus, send_to_user
from compute.models import Island
from compute.selectors.islands import OFFLINE, ONLINE, live_status, offline_cutoff
from compute.services import dispatch
from core import metrics
from core.redis import redis_client
from sail import subjects
from sail.client import sail

logger = logging.getLogger(__name__)
REREGISTER_EVERY_SECONDS = 60
REGISTERED_FIELDS = ["capabilities", "region", "agent_version"]
HEARTBEAT_FIELDS = [
    "status", "active_jobs", "agent_version", "metrics", "warm_workloads", "asking_prices",
    "runtimes", "max_concurrent_jobs", "last_heartbeat_at", "went_offline_at",
    "offline_graceful", "disconnect_penalized",
]  # fmt: skip


@dataclass(frozen=True)
class StatusChange:
    island_id: uuid.UUID
    owner_id: object  # the User's primary key
    status: str
    last_heartbeat_at: datetime | None


def _newest(records: list[dict]) -> list[dict]:
    """One record per host, the last received (a batch may hold a redelivered one)."""
    newest: dict[str, dict] = {}
    for record in records:
        seen = newest.get(record["host_id"])
        if seen is None or record["received_at"] > seen["received_at"]:
            newest[record["host_id"]] = record
    return list(newest.values())


def _at(record: dict) -> datetime:
    return datetime.fromtimestamp(record["received_at"], tz=UTC)


def register_islands(*, records: list[dict]) -> int:
    """Create or update each Island by host_id (paired or not); returns how many.

    The name is set on creation only: the owner may rename the Island afterwards.
    Liveness is left to heartbeats, which follow every registration within seconds.
    """
    islands = [
        Island(
            id=record["host_id"],
            name=record["name"] or f"island-{record['host_id'][:8]}",
            capabilities=record["capabilities"],
            region=record["region"] or "",
            agent_version=record["agent_version"] or "",
            registered_at=_at(record),
        )
        for record in _newest(records)
    ]
    Island.objects.bulk_create(
        islands, update_conflicts=True, unique_fields=["id"], update_fields=REGISTERED_FIELDS
    )
    # A pairing request often overtakes the registration and creates the row without a
    # name: give it the Island's own now (the confirmation page shows it).
    # One UPDATE whatever the batch size.
    if islands:
        names = Case(*(When(pk=i.pk, then=Value(i.name)) for i in islands), default=F("name"))
        Island.objects.filter(pk__in=[i.pk for i in islands], name="").update(name=names)
    return len(islands)


def ingest_heartbeats(*, records: list[dict] | str) -> int:
    """Store the latest state of every Island of the batch; returns how many were
    updated (unknown hosts and heartbeats older than the stored one are skipped).

    ``records`` may also come as one JSON array (what the bridge sends): Postgres reads
    it as it is, and the worker never parses it. An Island that heartbeats although the
    coordinator holds no registration of it (the registration was lost: a stream or
    bridge outage, a coordinator reset) is asked to register again.
    """
    with transaction.atomic():
        rows, unregistered = _store_batch(records)
        transaction.on_commit(partial(_count_lag, [row[5] for row in rows]), robust=True)
        changes = _changes(rows)
        if changes:
            transaction.on_commit(partial(notify_owners, changes), robust=True)
        if _came_online(rows):
            # Queued jobs may fit the Island that just came online: dispatch them now.
            transaction.on_commit(dispatch.request_dispatch, robust=True)
        if unregistered:
            transaction.on_commit(partial(ask_to_register, unregistered), robust=True)
    return len(rows)


def ask_to_register(host_ids: list[str]) -> None:
    """Publish ``host.{id}.reregister`` (an extension: our agent registers again at once),
    at most once per ``REREGISTER_EVERY_SECONDS`` per Island however many workers see
    its heartbeats."""

    client = redis_client()
    for host_id in host_ids:
        if client.set(f"reregister:{host_id}", 1, nx=True, ex=REREGISTER_EVERY_SECONDS):
            sail.publish(subjects.host(str(host_id), "reregister"), {"host_id": str(host_id)})


def _count_lag(stored: list[datetime | None]) -> None:
    now = timezone.now()
    for received_at in stored:
        if received_at is not None:
            metrics.HEARTBEAT_LAG.observe(max(0.0, (now - received_at).total_seconds()))


def _came_online(rows: list[tuple]) -> bool:
    now = timezone.now()
    return any(
        live_status(new_status, new_seen, now) == ONLINE
        and live_status(old_status, old_seen, now) != ONLINE
        for _, _, old_status, old_seen, new_status, new_seen in rows
    )


def _store_batch(records: list[dict] | str) -> tuple[list[tuple], list[str]]:
    """The rows updated, and the hosts of the batch without a registration."""
    if connection.vendor == "postgresql":
        document = records if isinstance(records, str) else orjson.dumps(records).decode()
        try:
            with transaction.atomic():
                return _update_postgres(document)
        except (DataError, IntegrityError):
            pass  # find the culprit below
    batch = _newest(orjson.loads(records) if isinstance(records, str) else records)
    return _store_isolating(batch), _unregistered([r["host_id"] for r in batch])


def _unregistered(host_ids: list[str]) -> list[str]:
    known = Island.objects.filter(id__in=host_ids).exclude(capabilities={})
    registered = {str(pk) for pk in known.values_list("id", flat=True)}
    return [host_id for host_id in host_ids if str(uuid.UUID(host_id)) not in registered]


def _store_isolating(batch: list[dict]) -> list[tuple]:
    """Store the batch; if the database refuses it, halve it until the culprit is alone,
    so that one poisonous heartbeat cannot hold back the thousand around it."""
    if not batch:
        return []
    try:
        with transaction.atomic():
            return _store(batch)
    except (DataError, IntegrityError) as exc:
        if len(batch) == 1:
            logger.warning("dropped the heartbeat of %s: %s", batch[0]["host_id"], exc)
            return []
        middle = len(batch) // 2
        return _store_isolating(batch[:middle]) + _store_isolating(batch[middle:])


def _store(batch: list[dict]) -> list[tuple]:
    if connection.vendor == "postgresql":
        return _update_postgres(orjson.dumps(batch).decode())[0]
    return _store_portable(batch)


# The batch travels as one JSON document that Postgres unpacks into rows: much cheaper
# than ten array parameters (adapting those costs more than the UPDATE itself). JSON
# null (a section the Island left out) becomes SQL NULL, so COALESCE keeps the old value;
# DISTINCT ON keeps the newest heartbeat of each host. The same statement names the
# hosts without a registration (no row, or a row that pairing made before it).
_UPDATE = """
WITH v AS (
    SELECT DISTINCT ON (host_id) * FROM jsonb_to_recordset(%s::jsonb) AS v(
        host_id uuid, received_at double precision, status text, active_jobs integer,
        agent_version text, metrics jsonb, warm_workloads jsonb, asking_prices jsonb,
        runtimes jsonb, max_concurrent_jobs integer)
    ORDER BY host_id, received_at DESC
), u AS (
UPDATE {table} AS i SET
    status = v.status,
    active_jobs = v.active_jobs,
    agent_version = COALESCE(v.agent_version, i.agent_version),
    metrics = v.metrics,
    warm_workloads = COALESCE(v.warm_workloads, i.warm_workloads),
    asking_prices = COALESCE(v.asking_prices, i.asking_prices),
    runtimes = COALESCE(v.runtimes, i.runtimes),
    max_concurrent_jobs = COALESCE(v.max_concurrent_jobs, i.max_concurrent_jobs),
    last_heartbeat_at = to_timestamp(v.received_at),
    went_offline_at = CASE WHEN v.status = 'offline' THEN to_timestamp(v.received_at) END,
    offline_graceful = (v.status = 'offline'),
    disconnect_penalized = false
FROM v, {table} AS old
WHERE i.id = v.host_id AND old.id = v.host_id
  AND (i.last_heartbeat_at IS NULL OR i.last_heartbeat_at < to_timestamp(v.received_at))
RETURNING i.id, i.owner_id, old.status, old.last_heartbeat_at, i.status, i.last_heartbeat_at
), missing AS (
    SELECT v.host_id FROM v LEFT JOIN {table} AS m ON m.id = v.host_id
    WHERE m.id IS NULL OR m.capabilities = '{{}}'::jsonb
)
SELECT *, false FROM u UNION ALL SELECT host_id, NULL, NULL, NULL, NULL, NULL, true FROM missing
"""


def _update_postgres(document: str) -> tuple[list[tuple], list[str]]:
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE.format(table=Island._meta.db_table), [document])
        rows = cursor.fetchall()
    return [row[:6] for row in rows if not row[6]], [str(row[0]) for row in rows if row[6]]


def _store_portable(batch: list[dict]) -> list[tuple]:
    islands = Island.objects.select_for_update(no_key=True).in_bulk([r["host_id"] for r in batch])
    rows, changed = [], []
    for record in batch:
        island = islands.get(uuid.UUID(record["host_id"]))
        received_at = _at(record)
        if island is None or (island.last_heartbeat_at and island.last_heartbeat_at >= received_at):
            continue
        before = (island.status, island.last_heartbeat_at)
        _apply(island, record, received_at)
        rows.append((island.id, island.owner_id, *before, island.status, received_at))
        changed.append(island)
    Island.objects.bulk_update(changed, HEARTBEAT_FIELDS, batch_size=500)
    return rows


def _apply(island: Island, record: dict, received_at: datetime) -> None:
    offline = record["status"] == OFFLINE
    island.status = record["status"]
    island.active_jobs = record["active_jobs"]
    island.metrics = record["metrics"]
    for name in ("agent_version", "asking_prices", "runtimes", "max_concurrent_jobs"):
        if record[name] is not None:
            setattr(island, name, record[name])
    if record["warm_workloads"] is not None:
        island.warm_workloads = record["warm_workloads"]
    island.last_heartbeat_at = received_at
    island.went_offline_at = received_at if offline else None
    island.offline_graceful = offline
    island.disconnect_penalized = False


def _changes(rows: list[tuple]) -> list[StatusChange]:
    now = timezone.now()
    changes = []
    for island_id, owner_id, old_status, old_seen, new_status, new_seen in rows:
        status = live_status(new_status, new_seen, now)
        if owner_id is not None and live_status(old_status, old_seen, now) != status:
            changes.append(StatusChange(island_id, owner_id, status, new_seen))
    return changes


def mark_stale_offline(*, now: datetime | None = None) -> int:
    """Mark offline the Islands whose last heartbeat is too old; returns how many."""
    now = now or timezone.now()
    stale = Island.objects.filter(
        Q(status=ONLINE)
        & (Q(last_heartbeat_at__lt=offline_cutoff(now)) | Q(last_heartbeat_at__isnull=True))
    )
    with transaction.atomic():
        rows = list(
            stale.select_for_update(skip_locked=True, no_key=True).values_list(
                "id", "owner_id", "last_heartbeat_at"
            )
        )
        Island.objects.filter(id__in=[row[0] for row in rows]).update(
            status=OFFLINE, went_offline_at=now, offline_graceful=False
        )
        changes = [StatusChange(i, owner, OFFLINE, seen) for i, owner, seen in rows if owner]
        if changes:
            transaction.on_commit(partial(notify_owners, changes), robust=True)
    return len(rows)


def notify_owners(changes: list[StatusChange]) -> None:
    """Tell each owner's browser (the websocket consumer relays it)."""
    for change in changes:
        seen = change.last_heartbeat_at
        send_to_user(
            change.owner_id,
            IslandStatus(
                island_id=str(change.island_id),
                status=change.status,
                last_heartbeat_at=seen.isoformat() if seen else None,
            ),
        )
