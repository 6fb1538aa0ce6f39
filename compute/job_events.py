"""What Islands report about their jobs: parse (in the bridge), apply (in Celery, through
compute.services.jobs), and relay tokens to clients at once.

Two paths, one result:
- The durable path: ``host.{id}.status|output|progress|image|lease`` reach the bridge
  through JetStream; the parse functions below validate them (registered in
  :mod:`compute.handlers`), and the tasks of :mod:`compute.tasks` apply them in
  batches (one transaction per batch of output chunks) and publish the client events.
- The fast path: :class:`TokenRelay` republishes each output chunk as a ``token`` event on
  ``jobs.{job_id}.events`` the moment it arrives, before any database write, so that the
  time to first token does not include a batch and a task round trip.
Both publish a token with the same ``Nats-Msg-Id`` (job, attempt, seq), so JetStream keeps
the first copy and drops the other; each path publishes a job's tokens in seq order.

The plain functions ``on_status`` ... ``on_lease`` ``(host_id, payload)`` apply one
message directly (tests, tools).
"""

import asyncio
import logging
import math
import time
import uuid
from typing import Annotated, Any

import msgspec
import orjson

from compute.models import Job
from compute.services import jobs, lifecycle
from sail import subjects
from sail.registry import Incoming
from sail.schemas import Invalid, decode

logger = logging.getLogger(__name__)
Id = Annotated[str, msgspec.Meta(max_length=100)]
Count = Annotated[int, msgspec.Meta(ge=0)]
MAX_CHUNK_CHARS = 256 * 1024


class Usage(msgspec.Struct):
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    milliseconds: Count | None = None  # what an ONNX job took on the Island
    pixels: Count | None = None


class Status(msgspec.Struct):
    job_id: Id
    state: Annotated[str, msgspec.Meta(max_length=20)]
    error: Annotated[str, msgspec.Meta(max_length=10_000)] | None = None
    timestamp: int | None = None
    usage: Usage | None = None  # extension, on ``succeeded``
    result: dict[str, Any] | None = None  # extension: a Cargo's structured output (OCR lines)


class Output(msgspec.Struct):
    job_id: Id
    seq: Annotated[int, msgspec.Meta(ge=1)]
    chunk: Annotated[str, msgspec.Meta(max_length=MAX_CHUNK_CHARS)] = ""
    is_final: bool = False


class Progress(msgspec.Struct):
    job_id: Id
    step: Count
    total: Count


class Image(msgspec.Struct):
    job_id: Id
    image_data: str
    format: Annotated[str, msgspec.Meta(max_length=20)] = "png"
    width: Count | None = None
    height: Count | None = None
    seed: int | None = None


class Lease(msgspec.Struct):
    job_id: Id
    extend_seconds: Annotated[float, msgspec.Meta(ge=0)] = 60.0


STATES = {"started", "streaming", "succeeded", "failed", "cancelled"}


def _uuid(value: str | None, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise Invalid(f"{what} is not a UUID") from None


def parse_status(msg: Incoming) -> dict:
    status = decode(msg.data, Status)
    if status.state not in STATES:
        raise Invalid(f"unknown job state {status.state[:20]!r}")
    record: dict[str, Any] = {
        "host_id": _uuid(msg.host_id, "host id"),
        "job_id": _uuid(status.job_id, "job_id"),
        "state": status.state,
        "error": status.error or "",
    }
    if status.usage is not None:
        record["usage"] = msgspec.to_builtins(status.usage)
    if status.result is not None:
        record["result"] = status.result
    return record


def parse_output(msg: Incoming) -> dict:
    out = decode(msg.data, Output)
    return {"host_id": _uuid(msg.host_id, "host id"), "job_id": _uuid(out.job_id, "job_id"),
            "seq": out.seq, "chunk": out.chunk, "is_final": out.is_final}  # fmt: skip


def parse_progress(msg: Incoming) -> dict:
    progress = decode(msg.data, Progress)
    return {"host_id": _uuid(msg.host_id, "host id"), "job_id": _uuid(progress.job_id, "job_id"),
            "step": progress.step, "total": progress.total}  # fmt: skip


def parse_image(msg: Incoming) -> dict:
    image = decode(msg.data, Image)
    fields = {"data": image.image_data, "format": image.format, "width": image.width,
              "height": image.height, "seed": image.seed}  # fmt: skip
    return {
        "host_id": _uuid(msg.host_id, "host id"),
        "job_id": _uuid(image.job_id, "job_id"),
        "image": {k: v for k, v in fields.items() if v is not None},
    }


def parse_lease(msg: Incoming) -> dict:
    lease = decode(msg.data, Lease)
    return {"host_id": _uuid(msg.host_id, "host id"), "job_id": _uuid(lease.job_id, "job_id"),
            "extend_seconds": lease.extend_seconds}  # fmt: skip


# --- one message, applied directly -------------------------------------------------
def _incoming(host_id: str, kind: str, payload: dict) -> Incoming:
    from datetime import UTC, datetime

    subject = f"host.{host_id}.{kind}"
    return Incoming(subject, str(host_id), kind, orjson.dumps(payload), datetime.now(UTC))


def on_status(host_id: str, payload: dict) -> bool:
    return jobs.apply_status(**parse_status(_incoming(host_id, "status", payload)))


def on_output(host_id: str, payload: dict) -> int:
    record = parse_output(_incoming(host_id, "output", payload))
    return jobs.apply_output(host_id=record["host_id"], chunks=[record])


def on_progress(host_id: str, payload: dict) -> bool:
    return jobs.apply_progress(**parse_progress(_incoming(host_id, "progress", payload)))


def on_image(host_id: str, payload: dict) -> bool:
    return jobs.apply_image(**parse_image(_incoming(host_id, "image", payload)))


def on_lease(host_id: str, payload: dict) -> bool:
    return jobs.apply_lease(**parse_lease(_incoming(host_id, "lease", payload)))


# --- the fast path ---------------------------------------------------------------------
class TokenRelay:
    """Republishes output chunks as token events at once (async; runs in the bridge).

    Per job it keeps the next expected seq and holds chunks that arrive early; a chunk
    from an Island that is not the job's current one is dropped. Who runs a job is
    learned from the assignment itself (``host.{id}.jobs``, whose ``Nats-Msg-Id`` is
    ``{job_id}:{attempt}``) and forgotten on ``host.{id}.cancel`` (sent on every requeue)
    and after the final chunk; for a job whose assignment this relay did not see (it
    started later), the database is asked, and the answer kept for ``ttl`` seconds.
    """

    def __init__(self, nc: Any, *, ttl: float = 2.0, max_jobs: int = 100_000) -> None:
        self.nc = nc
        self.ttl = ttl
        self.max_jobs = max_jobs
        self.owners: dict[str, tuple[float, str | None, int]] = {}  # job: (until, host, attempt)
        self.next_seq: dict[str, int] = {}
        self.held: dict[str, dict[int, str]] = {}

    async def subscribe(self, queue: str = "") -> list[Any]:
        """Listen on ``host.*.output``, ``.jobs`` and ``.cancel``, and the same of field
        Islands (core NATS; the durable path and the Islands' own consumers are
        unaffected)."""
        subs = []
        for prefix in ("", subjects.FIELD):
            subs += [
                await self.nc.subscribe(f"{prefix}host.*.jobs", cb=self.on_assignment),
                await self.nc.subscribe(f"{prefix}host.*.cancel", cb=self.on_cancel),
                await self.nc.subscribe(f"{prefix}host.*.output", queue=queue, cb=self.on_msg),
            ]
        return subs

    def _remember(self, job_id: str, until: float, host_id: str | None, attempt: int) -> None:
        if max(len(self.owners), len(self.next_seq), len(self.held)) >= self.max_jobs:
            self.owners.clear()
            self.next_seq.clear()
            self.held.clear()
        self.owners[job_id] = (until, host_id, attempt)

    def _forget(self, job_id: str) -> None:
        """Drop what is kept of the job's current attempt (its relay is over)."""
        owner = self.owners.pop(job_id, None)
        if owner is not None:
            self.next_seq.pop(f"{job_id}:{owner[2]}", None)
            self.held.pop(f"{job_id}:{owner[2]}", None)

    async def on_assignment(self, msg: Any) -> None:
        job_id, _, attempt = (msg.headers or {}).get("Nats-Msg-Id", "").rpartition(":")
        if job_id and attempt.isdigit():
            self._remember(job_id, math.inf, sender(msg.subject), int(attempt))

    async def on_cancel(self, msg: Any) -> None:
        try:
            job_id = str(orjson.loads(msg.data)["job_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        self._forget(job_id)

    async def on_msg(self, msg: Any) -> None:
        try:
            host_id = subjects.kind_of(msg.subject)[0]
            record = parse_output(Incoming(msg.subject, host_id, "output", msg.data, None))  # type: ignore[arg-type]
            await self.relay(record, sender(msg.subject))
        except Invalid:
            return  # the durable path logs it
        except Exception:
            logger.exception("token relay failed on %s", msg.subject)

    async def _owner(self, job_id: str) -> tuple[str | None, int]:
        cached = self.owners.get(job_id)
        now = time.monotonic()
        if cached and now < cached[0]:
            return cached[1], cached[2]
        from asgiref.sync import sync_to_async

        row = await sync_to_async(_running_on)(job_id)
        self._remember(job_id, now + self.ttl, *row)
        return row

    async def relay(self, record: dict, sent_by: str) -> int:
        """Publish what ``record`` makes publishable, in order; returns how many tokens.
        ``sent_by`` (:func:`sender`) must be the Island the job runs on."""
        job_id, seq = record["job_id"], record["seq"]
        island, attempt = await self._owner(job_id)
        if island != sent_by:
            return 0
        key = f"{job_id}:{attempt}"
        expected = self.next_seq.get(key, 1)
        if seq < expected:
            return 0
        held = self.held.setdefault(key, {})
        held[seq] = record["chunk"]
        published = 0
        subject = f"jobs.{job_id}.events"
        while expected in held:
            msg_id, event = lifecycle.event_token(job_id, attempt, expected, held.pop(expected))
            await self.nc.publish(subject, orjson.dumps(event), headers={"Nats-Msg-Id": msg_id})
            expected += 1
            published += 1
        self.next_seq[key] = expected
        if record.get("is_final") and not held:  # the job's output is complete
            self._forget(job_id)
        return published


def sender(subject: str) -> str:
    """Who a ``host.{id}.…`` subject speaks for: ``host.{id}``, or ``field.host.{id}``
    for the shared field user, who may never speak for an Island with a key."""
    return subject.rsplit(".", 1)[0]


def _running_on(job_id: str) -> tuple[str | None, int]:
    from django.db import close_old_connections

    close_old_connections()
    row = (
        Job.objects.filter(pk=job_id, status=Job.Status.RUNNING)
        .values_list("island_id", "attempts", "island__nkey")
        .first()
    )
    if not row or not row[0]:
        return None, 0
    return subjects.to_island(str(row[0]), "", field=row[2] is None).rstrip("."), row[1]


async def run_relay(nc: Any, stop: asyncio.Event) -> None:  # pragma: no cover - process glue
    subs = await TokenRelay(nc).subscribe()
    await stop.wait()
    for sub in subs:
        await sub.unsubscribe()
