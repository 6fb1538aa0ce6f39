"""What the coordinator publishes about jobs on NATS: assignments and cancels to Islands,
and the normalized per-job event stream that SSE clients read.

Streams (both created here when missing, idempotently, next to the bridge's own setup):
- ``JOBS`` captures ``host.*.jobs``; field Islands read it through their durable
  ``host-{id}`` consumers (island-protocol.md).
- ``JOB_UPDATES`` captures ``jobs.*.events``: one JSON event per thing a client sees
  (token, progress, status, image, done, error), deduplicated by ``Nats-Msg-Id``; kept in
  memory (sail.streams), since the job row is what lasts.
"""

import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.js.errors import NoStreamResponseError, NotFoundError

from compute.models import Island, Job
from sail import subjects
from sail.client import sail
from sail.streams import JOB_UPDATES, JOBS

logger = logging.getLogger(__name__)


def job_events_subject(job_id: object) -> str:
    return f"jobs.{job_id}.events"


_ensured = threading.Event()


def ensure_streams(force: bool = False) -> None:
    """Create ``JOBS`` and ``JOB_UPDATES`` if they are missing (never reconfigure them:
    the bridge does, on every start: sail.streams)."""
    if _ensured.is_set() and not force:
        return

    sail.call(_ensure_streams_async)
    _ensured.set()


async def _ensure_streams_async(nc: Any) -> None:
    js = nc.jetstream()
    for config in (JOBS, JOB_UPDATES):
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except Exception:  # a twin created it in between
                await js.stream_info(config.name)


def client_event(job_id: object, key: str, kind: str, **fields: Any) -> tuple[str, dict]:
    """``(Nats-Msg-Id, event)``; the id makes a republished event a duplicate."""
    return f"{job_id}:{key}", {"type": kind, "job_id": str(job_id), **fields}


@dataclass(frozen=True)
class Assignment:
    """A job's assignment to an Island, to publish once the transaction that made it has
    committed (``Nats-Msg-Id`` job and attempt: a retry is a duplicate)."""

    job_id: uuid.UUID
    island_id: str
    attempt: int
    payload: dict
    island_name: str = ""
    field: bool = False  # a field Island: no key of its own, no JetStream (sail.permissions)

    @property
    def subject(self) -> str:
        return self.island_subject("jobs")

    def island_subject(self, kind: str) -> str:
        return subjects.to_island(self.island_id, kind, field=self.field)

    def event(self) -> tuple[str, dict]:
        """The job's ``assigned`` client event, published once the assignment is stored."""
        key = f"{self.attempt}:s:assigned"
        fields = {"state": "running", "phase": "assigned", "island_id": self.island_id,
                  "island_name": self.island_name}  # fmt: skip
        return client_event(self.job_id, key, "status", **fields)


@dataclass
class Outbox:
    """Assignments made in a transaction, published after its commit: with :meth:`send`
    from sync code (on commit), or :meth:`asend` on an event loop's own connection (the
    async API views: no thread hop on the path to the first token). An assignment that
    cannot be published is returned to the caller, who requeues it
    (compute.services.dispatch.undelivered)."""

    items: list[Assignment] = field(default_factory=list)

    def add(self, item: Assignment) -> None:
        self.items.append(item)

    def send(self) -> list[Assignment]:
        """Publish through this process's sync connection; returns what failed."""
        if not self.items:
            return []
        items = list(self.items)
        try:
            return sail.call(self.asend)
        except Exception:  # no connection: none may have arrived, all are requeued
            logger.exception("could not publish %d assignments", len(items))
            return items

    async def asend(self, nc: Any) -> list[Assignment]:
        """Publish on ``nc``; returns the assignments that could not be published."""
        items, self.items = self.items, []
        failed = []
        for item in items:
            if not nc.is_connected:  # NATS is away: at once, not after a timeout per job
                failed.append(item)
                continue
            try:
                await _publish_assignment(nc, item)
            except NoStreamResponseError:
                try:
                    await _ensure_streams_async(nc)
                    await _publish_assignment(nc, item)
                except Exception:
                    failed.append(item)
            except Exception:
                failed.append(item)
        return failed


async def _publish_assignment(nc: Any, item: Assignment) -> None:
    """``host.{id}.jobs`` through JetStream; once the server has stored it, the job's
    ``assigned`` event. Only a failure of the first is the caller's to handle."""
    body, headers = orjson.dumps(item.payload), {"Nats-Msg-Id": f"{item.job_id}:{item.attempt}"}
    if item.field:  # its account has no JetStream: core NATS, as the protocol allows
        await nc.publish(item.subject, body, headers=headers)
        await nc.flush()
    else:
        await nc.jetstream().publish(item.subject, body, headers=headers)
    try:  # the assignment is stored: nothing here may make the caller retry it
        await _publish_events(nc, item.job_id, [item.event()], flush=False)
    except Exception:
        logger.exception("could not publish events of job %s", item.job_id)


def publish_cancel(host_id: uuid.UUID | str, job_id: object) -> None:
    try:
        keyless = Island.objects.filter(pk=host_id, nkey__isnull=True).exists()
        subject = subjects.to_island(str(host_id), "cancel", field=keyless)
        sail.publish(subject, {"job_id": str(job_id)})
    except Exception:
        # The lease sweep and the Island's own time limit still end the job.
        logger.exception("could not publish cancel of job %s to %s", job_id, host_id)


def publish_job_events(job_id: object, events: list[tuple[str, dict]]) -> None:
    """Publish ``(msg_id, event)`` pairs in order on ``jobs.{job_id}.events``.

    Core NATS publishes on one connection keep their order, and the stream captures
    them with ``Nats-Msg-Id`` dedupe; one flush per batch instead of one JetStream ack
    round trip per token is what makes thousands of tokens per second cheap. Never
    raises: an event a client misses is recoverable from the job row, a crashed handler
    of Island messages is not.
    """
    if not events:
        return
    try:
        ensure_streams()
        sail.call(lambda nc: _publish_events(nc, job_id, events))
    except Exception:
        logger.exception("could not publish events of job %s", job_id)


async def _publish_events(
    nc: Any, job_id: object, events: list[tuple[str, dict]], *, flush: bool = True
) -> None:
    """``flush``: wait until the server has them (a round trip); otherwise they leave with
    the connection's next write, in order."""
    if not events:
        return
    subject = job_events_subject(job_id)
    for msg_id, event in events:
        await nc.publish(subject, orjson.dumps(event), headers={"Nats-Msg-Id": msg_id})
    if flush and nc.is_connected:  # reconnecting: they leave, in order, once it is back
        await nc.flush()


def assignment_payload(job: Job, *, lease_ms: int) -> dict[str, Any]:
    """The ``host.{id}.jobs`` payload: protocol fields, then the Cargo's runtime fields."""
    cargo = job.cargo
    payload: dict[str, Any] = {
        "job_id": str(job.pk),
        "workload_id": cargo.slug,
        "workload_slug": cargo.slug,  # extension
        "input": job.input,
        "lease_expires": lease_ms,
        "runtime_type": cargo.runtime_type,
        "time_limit_seconds": cargo.time_limit_seconds,  # extension
    }
    if cargo.onnx_task_type:
        payload["onnx_task_type"] = cargo.onnx_task_type
    spec = cargo.spec if isinstance(cargo.spec, dict) else {}
    for name, value in spec.items():
        if value is not None and name not in payload:
            payload[name] = value
    return payload
