"""The bridge between the Islands on NATS and the coordinator's database.

A thin asyncio loop; everything it decides is in plain functions (the parse functions
of the apps' ``handlers`` modules, :func:`sort_batch`) that are tested directly. It
imports no app: what it needs of them (the answer to a pairing request, which Islands
have a key, the auth callout) they register in :mod:`sail.registry`.

- Request/reply (core NATS, answered at once): ``coordinator.hosts.pairing`` and
  ``host.*.ping``.
- Everything that must not be lost comes through the durable pull consumers of
  :mod:`sail.streams`: the bridge collects a batch (up to ``SAIL_BATCH_SIZE`` messages or
  ``SAIL_BATCH_WAIT_SECONDS``; ``SAIL_JOB_EVENTS_WAIT_SECONDS`` for job events), sends each
  kind's records to its Celery task (several kinds of one stream together when the
  stream says so, :func:`plan`), and the task acks the messages after its commit.
- One bad message is logged and terminated (never redelivered); it never stops the loop.
"""

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import nats
import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from core import tx
from sail import registry, streams, subjects
from sail.client import credentials, servers
from sail.pull import Puller
from sail.registry import Incoming, Kind
from sail.schemas import Invalid

logger = logging.getLogger(__name__)
QUEUE_GROUP = "coordinator"
MAX_REQUEST_BYTES = 4096
CONCURRENT_REPLIES = 16


@dataclass
class Sorted:
    """A fetched batch, sorted: records (with their ack subjects) per kind, and rejects."""

    records: dict[Kind, list[Any]] = field(default_factory=lambda: defaultdict(list))
    msgs: dict[Kind, list[Msg]] = field(default_factory=lambda: defaultdict(list))
    rejected: list[tuple[Msg, str]] = field(default_factory=list)


def received_at(msg: Msg) -> datetime:
    """The time the NATS server stored a JetStream message (now for a core message),
    read from the ack subject: ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.
    <consumer seq>.<nanoseconds>.<pending>`` (two more tokens after ``ACK`` with a domain)."""
    tokens = (msg.reply or "").split(".")
    try:
        nanoseconds = int(tokens[7] if len(tokens) == 9 else tokens[9])
        return datetime.fromtimestamp(nanoseconds / 1e9, tz=UTC)
    except (IndexError, ValueError):
        return datetime.now(UTC)


def parse_one(msg: Msg, kinds: dict[str, Kind]) -> tuple[Kind, Any]:
    host_id, name, _ = subjects.kind_of(msg.subject)
    kind = kinds.get(name)
    if kind is None:
        raise Invalid(f"no handler for {name!r}")
    if len(msg.data) > kind.max_bytes:
        raise Invalid(f"oversized: {len(msg.data)} bytes > {kind.max_bytes}")
    if b"\\u0000" in msg.data:  # Postgres text and jsonb cannot hold NUL
        raise Invalid("NUL character")
    incoming = Incoming(msg.subject, host_id, name, msg.data, received_at(msg))
    return kind, kind.parse(incoming)


def sort_batch(msgs: list[Msg], kinds: dict[str, Kind]) -> Sorted:
    batch = Sorted()
    for msg in msgs:
        try:
            kind, record = parse_one(msg, kinds)
        except Invalid as exc:
            batch.rejected.append((msg, str(exc)[:200]))
        except Exception as exc:  # a bug in a handler must not stop the bridge either
            logger.exception("handler failed on %s", msg.subject)
            batch.rejected.append((msg, f"handler error: {exc!r}"[:200]))
        else:
            batch.records[kind].append(record)
            batch.msgs[kind].append(msg)
    return batch


def keyed_hosts_of_field_messages(batch: Sorted) -> set[str]:
    """The host_ids that the shared field user spoke for in ``batch``."""
    return {
        record["host_id"]
        for kind, records in batch.records.items()
        for record, msg in zip(records, batch.msgs[kind], strict=True)
        if msg.subject.startswith(subjects.FIELD)
    }


def drop_impersonations(batch: Sorted, keyed: set[str]) -> None:
    """Move to the rejects what the shared field user said for an Island with a key of
    its own (``keyed``): only that key may speak for it."""
    for kind in list(batch.records):
        kept: list[tuple[Any, Msg]] = []
        for record, msg in zip(batch.records[kind], batch.msgs[kind], strict=True):
            if msg.subject.startswith(subjects.FIELD) and record["host_id"] in keyed:
                batch.rejected.append(
                    (msg, "the field user may not speak for an Island with a key")
                )
            else:
                kept.append((record, msg))
        batch.records[kind] = [record for record, _ in kept]
        batch.msgs[kind] = [msg for _, msg in kept]
        if not kept:
            del batch.records[kind], batch.msgs[kind]


@dataclass
class Send:
    """One Celery task message: the task, its arguments, the messages it acks."""

    run: Any  # the Celery task
    args: tuple
    msgs: list[Msg]

    @property
    def task(self) -> str:
        return self.run.name


def plan(batch: Sorted) -> list[Send]:
    """The tasks of a sorted batch: one per kind, except that the kinds of a stream with a
    task for several kinds (registry.together) travel in one, in its order."""
    sends: list[Send] = []
    grouped: dict[str, list[Kind]] = defaultdict(list)
    for kind in batch.records:
        grouped[kind.stream].append(kind)
    for stream, kinds in grouped.items():
        task, order = registry.TOGETHER.get(stream, (None, ()))
        if len(kinds) > 1 and task:
            kinds.sort(key=lambda kind: order.index(kind.name))
            parts = [(k.name, k.pack(batch.records[k]), _acks(batch.msgs[k])) for k in kinds]
            sends.append(Send(task, (parts,), [m for k in kinds for m in batch.msgs[k]]))
            continue
        for k in kinds:
            sends.append(Send(k.task, (k.pack(batch.records[k]), _acks(batch.msgs[k])),
                              batch.msgs[k]))  # fmt: skip
    return sends


def _acks(msgs: list[Msg]) -> list[str]:
    return [msg.reply for msg in msgs]


def ping_reply(data: bytes) -> dict[str, Any]:
    """The reply to ``host.{id}.ping``: at once, whatever was sent."""
    return {"pong": True, "timestamp": int(time.time() * 1000)}


def call_sync(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking Django code with fresh database connections (no request cycle here)."""
    close_old_connections()
    try:
        return function(*args, **kwargs)
    finally:
        close_old_connections()


class Bridge:
    def __init__(
        self,
        *,
        nats_url: str | None = None,
        batch_size: int | None = None,
        batch_wait: float | None = None,
    ) -> None:
        self.nats_url = nats_url or settings.NATS_URL
        self.batch_size = batch_size or settings.SAIL_BATCH_SIZE
        self.batch_wait = batch_wait if batch_wait is not None else settings.SAIL_BATCH_WAIT_SECONDS
        self.kinds = registry.discover()
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.replies = asyncio.Semaphore(CONCURRENT_REPLIES)
        self.background: set[asyncio.Task] = set()
        self.nc: Client | None = None

    def stop(self) -> None:
        logger.info("bridge stopping")
        self.stopping.set()

    async def run(self) -> None:
        self.nc = await self._connect()
        if self.nc is None:
            return
        try:
            # First: no Island can connect while nobody answers the server's questions.
            js = self.nc.jetstream()
            callout = registry.ANSWERS["callout"](self.nats_url, self.stopping, js)
            consumers = [asyncio.create_task(callout)]
            await self._ensure_streams(js)
            for subject in (subjects.pairing("*"), subjects.FIELD + subjects.PAIRING):
                await self.nc.subscribe(subject, queue=QUEUE_GROUP, cb=self._on_pairing)
            for subject in (
                subjects.host("*", "ping"),
                subjects.FIELD + subjects.host("*", "ping"),
            ):
                await self.nc.subscribe(subject, queue=QUEUE_GROUP, cb=self._on_ping)
            # nats-py may send flush's PING ahead of the SUBs before it: a second flush
            # makes sure the server has them once ready is set (as the callout does).
            await self.nc.flush()
            await self.nc.flush()
            consumers += [
                asyncio.create_task(self._consume(streams.CONSUMERS[stream]))
                for stream in sorted(registry.streams_with_handlers())
            ]
            consumers += [
                asyncio.create_task(run(self.nc, self.stopping)) for run in registry.SERVICES
            ]
            self.ready.set()
            logger.info("bridge ready: kinds %s", ", ".join(sorted(self.kinds)))
            await self.stopping.wait()
            done, late = await asyncio.wait(consumers, timeout=30)
            for task in late:
                task.cancel()
            for task in done:
                if task.exception() is not None:
                    logger.error("bridge task failed", exc_info=task.exception())
            if self.background:
                await asyncio.wait(self.background, timeout=5)
        finally:
            await self._close()

    async def _connect(self) -> Client | None:
        delay = 1.0
        while not self.stopping.is_set():
            try:
                return await nats.connect(
                    servers(self.nats_url),
                    name="coordinator-bridge",
                    **credentials(),
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    ping_interval=10,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
            except Exception as exc:
                logger.warning("cannot reach NATS (%s); retrying in %.0f s", exc, delay)
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay)
                except TimeoutError:
                    delay = min(delay * 2, 30.0)
        return None

    async def _ensure_streams(self, js: JetStreamContext) -> None:
        delay = 1.0
        while True:
            try:
                await streams.ensure_all(js)
                return
            except Exception as exc:
                if self.stopping.is_set():
                    raise
                logger.warning("JetStream not ready (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:
                await self.nc.close()

    async def _on_error(self, exc: Exception) -> None:
        logger.warning("NATS error: %s", exc)

    async def _on_disconnected(self) -> None:
        if not self.stopping.is_set():
            logger.warning("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        logger.info("reconnected to NATS")
        if self.nc is not None:  # a fresh server may have lost the streams
            self._spawn(streams.ensure_all(self.nc.jetstream()))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # --- request/reply

    async def _on_ping(self, msg: Msg) -> None:
        try:
            await msg.respond(orjson.dumps(ping_reply(msg.data)))
        except Exception:
            logger.exception("could not answer a ping on %s", msg.subject)

    async def _on_pairing(self, msg: Msg) -> None:
        if not msg.reply:
            return
        self._spawn(self._answer_pairing(msg))

    async def _answer_pairing(self, msg: Msg) -> None:
        async with self.replies:
            try:
                if len(msg.data) > MAX_REQUEST_BYTES:
                    reply = {"success": False, "error": "invalid pairing request: too large"}
                else:
                    # The key of ``coordinator.hosts.pairing.{key}``: only its holder may
                    # publish there. The field user's requests come without one.
                    key = (
                        None
                        if msg.subject.startswith(subjects.FIELD)
                        else msg.subject.rsplit(".", 1)[1]
                    )
                    answer = registry.ANSWERS["pairing"]
                    reply = await sync_to_async(call_sync)(answer, msg.data, key)
                await msg.respond(orjson.dumps(reply))
            except Exception:
                logger.exception("could not answer a pairing request")

    # --- JetStream batches

    async def _consume(self, consumer: streams.Consumer) -> None:
        assert self.nc is not None
        wait = self.batch_wait
        if consumer.stream == subjects.JOB_EVENTS_STREAM:
            # A job's end (its last output and ``succeeded``) is what a client waits for:
            # a short gathering; heartbeats gain more from large batches.
            wait = min(wait, settings.SAIL_JOB_EVENTS_WAIT_SECONDS)
        puller = Puller(
            self.nc, consumer.stream, consumer.durable, batch=self.batch_size, wait=wait
        )
        await puller.start()
        # On stop, finish the pull request in flight so that nothing waits for ack_wait.
        while not (self.stopping.is_set() and puller.idle):
            try:
                msgs = await puller.collect(self.stopping)
                if msgs:
                    await self._handle(msgs)
            except Exception:
                logger.exception("consumer %s failed; going on in 1 s", consumer.durable)
                await asyncio.sleep(1)
        await puller.stop()

    async def _handle(self, msgs: list[Msg]) -> None:
        batch = sort_batch(msgs, self.kinds)
        if field_hosts := keyed_hosts_of_field_messages(batch):
            keyed = await tx.in_thread(registry.ANSWERS["keyed_islands"], field_hosts)
            drop_impersonations(batch, keyed)
        for send in plan(batch):
            try:
                await sync_to_async(call_sync)(send.run.apply_async, args=send.args)
            except Exception:
                # The broker refused: ask JetStream to deliver these again shortly.
                logger.exception("could not queue %d messages for %s", len(send.msgs), send.task)
                await asyncio.gather(*(m.nak(delay=5) for m in send.msgs), return_exceptions=True)
        if batch.rejected:
            first = "; ".join(f"{m.subject}: {why}" for m, why in batch.rejected[:3])
            logger.warning("skipped %d bad messages (%s)", len(batch.rejected), first)
            await asyncio.gather(*(m.term() for m, _ in batch.rejected), return_exceptions=True)
