"""The JetStream streams and the coordinator's durable consumers (see README, "NATS
streams and consumers"). The bridge ensures them on every start: created when missing,
updated when their configuration drifted, left alone otherwise."""

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from sail import subjects

logger = logging.getLogger(__name__)
MB = 1024 * 1024


def _stream(
    *,
    retention: RetentionPolicy,
    max_age: float,
    max_mb: int,
    storage: StorageType = StorageType.FILE,
    duplicate_window: float = 120.0,
    **config: Any,
) -> StreamConfig:
    """One of the coordinator's streams: bounded in age and size, dropping its oldest
    messages when full, with as many replicas as the cluster is set to keep."""
    return StreamConfig(
        retention=retention,
        storage=storage,
        max_age=max_age,
        max_bytes=max_mb * MB,
        discard=DiscardPolicy.OLD,
        num_replicas=settings.SAIL_STREAM_REPLICAS,
        duplicate_window=duplicate_window,
        **config,
    )


ISLANDS = _stream(
    name=subjects.ISLANDS_STREAM,
    description="Island registrations and heartbeats, kept until the coordinator stored them",
    # An Island with a key registers on its own subject; the field user's registrations
    # and heartbeats arrive under ``field.`` (sail.server_config).
    subjects=[
        subjects.host("*", "register"),
        subjects.host("*", "heartbeat"),
        subjects.FIELD + subjects.REGISTER,
        subjects.FIELD + subjects.host("*", "heartbeat"),
    ],
    # Interest: a message goes once every consumer acked it; with no consumer at all
    # (first start) nothing piles up. Heartbeats lose their worth in minutes.
    retention=RetentionPolicy.INTEREST,
    max_age=3600.0,
    max_mb=settings.SAIL_ISLANDS_MAX_MB,
    max_msg_size=64 * 1024,
    duplicate_window=10.0,
)

JOB_EVENTS = _stream(
    name=subjects.JOB_EVENTS_STREAM,
    description="What Islands report about their jobs: status, output, progress, images, leases",
    subjects=[
        prefix + subjects.host("*", kind)
        for prefix in ("", subjects.FIELD)
        for kind in ("status", "output", "progress", "image", "lease")
    ],
    retention=RetentionPolicy.INTEREST,
    max_age=24 * 3600.0,
    max_mb=settings.SAIL_JOB_EVENTS_MAX_MB,
)

# Coordinator → Island job assignments. Each Island reads its own subject through a
# durable consumer ``host-{id}`` (the coordinator creates it: an Island may only read it);
# a work queue hands each assignment to exactly one reader and forgets it once acked.
# Field Islands have no JetStream: theirs go on core NATS (``field.host.{id}.jobs``).
JOBS = _stream(
    name=subjects.JOBS_STREAM,
    description="Job assignments, one subject per Island (host.{id}.jobs)",
    subjects=[subjects.host("*", "jobs")],
    retention=RetentionPolicy.WORK_QUEUE,
    max_age=3600.0,
    max_mb=settings.SAIL_JOBS_MAX_MB,
)

# Coordinator → clients: one event per thing a client sees, for SSE and chat completions
# (compute.services.publish). A replay buffer, not a record: what lasts is the job row
# (its output), so it lives in memory, which costs the server half as much per
# delivered event as a file (bench/README.md), and may be dropped and made anew.
JOB_UPDATES_STREAM = "JOB_UPDATES"
JOB_UPDATES = _stream(
    name=JOB_UPDATES_STREAM,
    description="Normalized per-job events for clients (SSE): jobs.{job_id}.events",
    subjects=["jobs.*.events"],
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.MEMORY,
    max_age=24 * 3600.0,
    max_mb=settings.JOB_UPDATES_MAX_MB,
)

STREAMS = [ISLANDS, JOB_EVENTS, JOBS, JOB_UPDATES]
# Streams that may be deleted and made anew when a setting the server cannot change in
# place (storage) differs; the others hold what must not be lost.
REPLACEABLE = {JOB_UPDATES_STREAM}
COMPARED = (
    "subjects", "retention", "storage", "max_age", "max_bytes", "max_msg_size", "discard",
    "num_replicas",
)  # fmt: skip


@dataclass(frozen=True)
class Consumer:
    stream: str
    durable: str

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            # Acked by the Celery worker after its transaction commits: this bounds how
            # long a batch may sit in the broker and the worker before redelivery.
            ack_wait=120.0,
            max_deliver=10,
            max_ack_pending=100_000,
            max_waiting=16,
        )


def island_consumer(host_id: str) -> ConsumerConfig:
    """The durable consumer an Island with a key reads its assignments with (the
    protocol's ``host-{id}``: explicit ack, on receipt; ``max_deliver`` 5, ``ack_wait``
    60 s). Made by the coordinator: the Island may read it, not make or change it."""
    return ConsumerConfig(
        durable_name=f"host-{host_id}",
        name=f"host-{host_id}",
        filter_subject=subjects.host(host_id, "jobs"),
        ack_policy=AckPolicy.EXPLICIT,
        max_deliver=5,
        ack_wait=60.0,
        max_ack_pending=64,
    )


async def ensure_island_consumer(js: JetStreamContext, host_id: str) -> None:
    await js.add_consumer(subjects.JOBS_STREAM, island_consumer(host_id))


CONSUMERS = {
    subjects.ISLANDS_STREAM: Consumer(subjects.ISLANDS_STREAM, "coordinator-islands"),
    subjects.JOB_EVENTS_STREAM: Consumer(subjects.JOB_EVENTS_STREAM, "coordinator-job-events"),
}


def _differs(wanted: StreamConfig, current: StreamConfig) -> list[str]:
    return [
        name
        for name in COMPARED
        if getattr(wanted, name) is not None and getattr(wanted, name) != getattr(current, name)
    ]


async def ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> str:
    """Create or update one stream; returns what it did: created, updated, replaced or
    unchanged."""
    try:
        info = await js.stream_info(wanted.name or "")
    except NotFoundError:
        await js.add_stream(wanted)
        logger.info("created stream %s", wanted.name)
        return "created"
    changed = _differs(wanted, info.config)
    if not changed:
        return "unchanged"
    if "storage" in changed and wanted.name in REPLACEABLE:
        logger.info("replacing stream %s: its storage changed", wanted.name)
        await js.delete_stream(wanted.name or "")
        await js.add_stream(wanted)
        return "replaced"
    logger.info("updating stream %s: %s", wanted.name, ", ".join(changed))
    await js.update_stream(wanted)
    return "updated"


async def ensure_all(js: JetStreamContext, *, strict: bool = False) -> None:
    """Every stream and consumer; ``strict`` raises when a stream cannot be set up, else
    the bridge keeps serving with what exists (e.g. a retention change the server refuses)."""
    for stream in STREAMS:
        try:
            await ensure_stream(js, stream)
        except Exception:
            if strict:
                raise
            logger.exception("could not create or update stream %s", stream.name)
    for consumer in CONSUMERS.values():
        await js.add_consumer(consumer.stream, consumer.config())
