"""A job's events as one client sees them: in order, each once, ending with ``done`` or
``error`` (``GET /jobs/:id/stream`` and chat completions read them here).

Events are published on ``jobs.{id}.events`` (compute.services.publish): the bridge's
token relay and the Celery worker publish each token with the same ``Nats-Msg-Id``;
``JOB_UPDATES`` keeps the first copy of each, in publication order. Two ways to read them:

- **Live** (``fresh``): the request that submits a job subscribes on core NATS *before*
  it publishes the job's assignment, on the same connection, so the server holds the
  subscription before any event of the job can exist, and pushes each event the moment
  it is published: no consumer to create, no stream in between. It also reads the
  output chunks of the job's Island itself (``host.{id}.output``, parsed and checked as
  the bridge does), which makes each token one hop from the Island instead of three; the
  relay's and the worker's copies that follow are recognised by their message id and
  dropped. Core NATS may drop messages (the connection breaks, or falls behind): a token
  sequence with a hole, or a reconnection since the subscription, switches the feed to
  the stream, read again from its start; what was already passed on is dropped likewise.
- **From the stream** (a client that attaches late, or after a loss): a JetStream
  ordered consumer delivering ``JOB_UPDATES`` from its start, so the past comes first
  and the present follows on the same consumer, with no gap. A finished job whose events
  have left the stream is replayed from its row: the whole output as one token, then
  ``done`` or ``error``.

A job that waits for an Island starts its feed with its row's ``status`` (queued, and
why: compute.services.waiting), put first before anything is read; a change of reason
follows as an event of the stream. Were the last events never published (a crashed
publisher), a heartbeat that finds the job finished in the database twice in a row ends
the feed from its row.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from django.conf import settings
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from compute.job_events import parse_output
from compute.models import Job
from compute.services.lifecycle import WAITING, event_token, usage_of
from compute.services.publish import Assignment, job_events_subject
from compute.services.waiting import queued_event
from core.tx import in_thread
from sail.client import loop_connection, loop_epoch
from sail.registry import Incoming
from sail.schemas import Invalid
from sail.streams import JOB_UPDATES, JOB_UPDATES_STREAM
from sail.subjects import kind_of

logger = logging.getLogger(__name__)
KINDS = frozenset({"token", "progress", "status", "image", "done", "error"})
TERMINAL = frozenset({"done", "error"})
# A finished job's events are read back from the stream within this time, or replayed
# from its row.
STORED_READ_SECONDS = 5.0
# Once a feed is flowing, events are gathered this long before a write.
LINGER_SECONDS = 0.002


class Relay:
    """What of a job's events goes to the client, once each.

    An event already passed on (its message id seen: a token the relay and the worker
    both published, or the stream read again after a loss) is dropped. Tokens carry
    ``seq`` (1, 2, ... per attempt): one not above the last seen is a duplicate, and one
    beyond the next marks a loss (``lost``; it is held back). A job requeued to another
    Island (``status`` ``queued``) starts a new attempt whose output starts again; the
    client already has the text up to ``sent`` characters, so only what goes beyond it
    is passed on.
    """

    def __init__(self, job_id: object) -> None:
        self.job_id = str(job_id)
        self.sent = 0  # characters of output passed on
        self.attempt_chars = 0  # characters of output of the current attempt seen
        self.last_seq = 0
        self.images = 0
        self.ended = False
        self.lost = False
        self.seen: set[str] = set()

    def accept(self, event: Any, msg_id: str | None = None, *, strict: bool = False) -> dict | None:
        """``event`` to pass on, or None. ``strict``: a hole in the token sequence is a
        loss (live feeds), not a jump to take (the stream, whose old events may have
        expired)."""
        kind = event.get("type") if isinstance(event, dict) else None
        if kind not in KINDS or self.ended or (msg_id is not None and msg_id in self.seen):
            return None
        if kind == "token":
            seq = event.get("seq")
            if strict and isinstance(seq, int) and seq > self.last_seq + 1:
                self.lost = True
                return None
            event = self._token(event)
        elif kind == "status" and event.get("state") == "queued":
            self.last_seq, self.attempt_chars = 0, 0
        elif kind == "image":
            self.images += 1
        elif kind in TERMINAL:
            self.ended = True
        if msg_id is not None:
            self.seen.add(msg_id)
        return event

    def _token(self, event: dict) -> dict | None:
        seq = event.get("seq")
        if isinstance(seq, int):
            if seq <= self.last_seq:
                return None
            self.last_seq = seq
        text = event.get("content")
        text = text if isinstance(text, str) else ""
        start = self.attempt_chars
        self.attempt_chars += len(text)
        if self.attempt_chars <= self.sent:
            return None
        if start < self.sent:
            event = {**event, "content": text[self.sent - start :]}
        self.sent = self.attempt_chars
        return event

    def finish_from(self, job: Job) -> list[dict]:
        """The rest of a finished ``job`` from its row: images and output not yet passed
        on, then ``status`` and ``done`` or ``error``."""
        events: list[dict] = [
            {"type": "image", "job_id": self.job_id, **image} for image in job.images[self.images :]
        ]
        rest = job.output[self.sent :]
        if rest:
            events.append({"type": "token", "job_id": self.job_id, "content": rest})
        events.append({"type": "status", "job_id": self.job_id, "state": job.status})
        if job.status == Job.Status.COMPLETED:
            usage = {k: v for k, v in usage_of(job).items() if k != "credits_used"}
            events.append({"type": "done", "job_id": self.job_id, "usage": usage})
        else:
            events.append(
                {"type": "error", "job_id": self.job_id, "error": job.error or job.status}
            )
        self.sent, self.images, self.ended = len(job.output), len(job.images), True
        return events


class _Inbox:
    """Messages pushed by subscriptions, taken in batches (one write per batch): event
    JSON (decoded when taken) or an event already made, with its message id."""

    def __init__(self) -> None:
        self.items: list[tuple[bytes | dict, str | None]] = []
        self.ready = asyncio.Event()

    async def put(self, msg: Any) -> None:
        self.add(msg.data, (msg.headers or {}).get("Nats-Msg-Id"))

    def add(self, event: bytes | dict, msg_id: str | None) -> None:
        self.items.append((event, msg_id))
        self.ready.set()

    async def take(self, wait: float, linger: float = 0.0) -> list[tuple[bytes | dict, str | None]]:
        """What arrived, waiting up to ``wait`` for something; then ``linger`` more
        seconds for what follows it, so that a fast stream is written in fewer, larger
        chunks (one write per token costs more than relaying the token)."""
        if not self.items:
            try:
                await asyncio.wait_for(self.ready.wait(), wait)
            except TimeoutError:
                return []
        if linger:
            await asyncio.sleep(linger)
        items, self.items = self.items, []
        self.ready.clear()
        return items


async def _from_stream(job_id: object, inbox: _Inbox) -> Any:
    js = (await loop_connection()).jetstream()
    subject = job_events_subject(job_id)
    kwargs: dict[str, Any] = {
        "cb": inbox.put,
        "ordered_consumer": True,
        "deliver_policy": DeliverPolicy.ALL,
    }
    try:
        return await js.subscribe(subject, stream=JOB_UPDATES_STREAM, **kwargs)
    except NotFoundError:  # no job event was ever published on this server
        try:
            await js.add_stream(JOB_UPDATES)
        except Exception:
            await js.stream_info(JOB_UPDATES_STREAM)  # created in between by another process
        return await js.subscribe(subject, stream=JOB_UPDATES_STREAM, **kwargs)


async def _has_stored_events(job_id: object) -> bool:
    js = (await loop_connection()).jetstream()
    try:
        await js.get_last_msg(JOB_UPDATES_STREAM, job_events_subject(job_id))
    except NotFoundError:
        return False
    return True


def _decode(raw: bytes | dict) -> Any:
    if isinstance(raw, dict):
        return raw
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        logger.warning("skipping an event that is not JSON")
        return None


def _job_row(job_id: Any) -> Job | None:
    return Job.objects.filter(pk=job_id).first()


async def _replay_finished(job: Job) -> list[dict]:
    """A finished job's events: from the stream while it holds them all (its tokens add
    up to the stored output), from the row otherwise."""
    if await _has_stored_events(job.pk):
        relay, inbox, events = Relay(job.pk), _Inbox(), []
        sub = await _from_stream(job.pk, inbox)
        deadline = time.monotonic() + STORED_READ_SECONDS
        try:
            while not relay.ended and (left := deadline - time.monotonic()) > 0:
                for raw, msg_id in await inbox.take(left):
                    if (event := relay.accept(_decode(raw), msg_id)) is not None:
                        events.append(event)
        finally:
            await sub.unsubscribe()
        tokens = "".join(e["content"] for e in events if e["type"] == "token")
        if relay.ended and tokens == job.output:
            return events
    return Relay(job.pk).finish_from(job)


class _IslandOutputs:
    """The output of the Islands that run this process's live jobs: one subscription per
    Island (not per job), each chunk parsed and checked once, as the bridge does, and
    handed to its job's feed as the token event the relay makes of it (same content, same
    message id)."""

    def __init__(self) -> None:
        self.islands: dict[str, tuple[Any, dict[str, tuple[int, _Inbox]]]] = {}

    async def watch(self, assignment: Assignment, inbox: _Inbox) -> None:
        """From now on (the subscription is the server's before the caller publishes the
        assignment on the same connection)."""
        island_id, job_id = assignment.island_id, str(assignment.job_id)
        if island_id not in self.islands:
            nc = await loop_connection()
            sub = await nc.subscribe(assignment.island_subject("output"), cb=self._receive)
            self.islands[island_id] = (sub, {})
        self.islands[island_id][1][job_id] = (assignment.attempt, inbox)

    async def unwatch(self, island_id: str, job_id: object) -> None:
        found = self.islands.get(island_id)
        if found is None:
            return
        sub, jobs = found
        jobs.pop(str(job_id), None)
        if not jobs:
            del self.islands[island_id]
            try:
                await sub.unsubscribe()
            except Exception:  # the connection is gone: so is the subscription
                logger.debug("could not unsubscribe", exc_info=True)

    async def _receive(self, msg: Any) -> None:
        island_id = kind_of(msg.subject)[0] or ""
        jobs = self.islands.get(island_id, (None, {}))[1]
        try:
            record = parse_output(Incoming(msg.subject, island_id, "output", msg.data, None))  # type: ignore[arg-type]
        except Invalid:
            return  # the bridge logs it
        if (watcher := jobs.get(record["job_id"])) is not None:
            attempt, inbox = watcher
            msg_id, event = event_token(record["job_id"], attempt, record["seq"], record["chunk"])
            inbox.add(event, msg_id)


_island_outputs: dict[asyncio.AbstractEventLoop, _IslandOutputs] = {}


def island_outputs() -> _IslandOutputs:
    """This event loop's (one per web process; tests run several loops)."""
    loop = asyncio.get_running_loop()
    if loop not in _island_outputs:
        _island_outputs.clear()
        _island_outputs[loop] = _IslandOutputs()
    return _island_outputs[loop]


class Feed:
    """The events of one job for one client (see the module); open it with :func:`open`,
    read :meth:`batches`."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.relay = Relay(job.pk)
        self.inbox = _Inbox()
        self.subs: list[Any] = []
        self.live_since: int | None = None  # the connection's epoch when live
        self.island: str | None = None  # whose output this live feed reads

    @classmethod
    async def open(cls, job: Job, *, assignment: Assignment | None = None) -> "Feed":
        """``assignment``: the job's, which the caller publishes itself (on this
        process's connection) once this returns: the feed reads live from the start."""
        feed = cls(job)
        if job.status in Job.FINAL:
            return feed
        if job.status in WAITING and job.queue_reason:  # first, before any event is read
            feed.inbox.add(queued_event(job)[1], None)
        if assignment is not None:
            nc = await loop_connection()
            feed.live_since = loop_epoch()
            feed.subs = [await nc.subscribe(job_events_subject(job.pk), cb=feed.inbox.put)]
            await island_outputs().watch(assignment, feed.inbox)
            feed.island = assignment.island_id
        else:
            feed.subs = [await _from_stream(job.pk, feed.inbox)]
        return feed

    async def _to_stream(self) -> None:
        """Something may have been lost on the live subscription: read the stream."""
        logger.info("job %s: live events may be incomplete; reading the stream", self.job.pk)
        await self.close()
        self.live_since, self.relay.lost = None, False
        self.inbox = _Inbox()
        self.subs = [await _from_stream(self.job.pk, self.inbox)]

    async def _leave_island(self) -> None:
        """The job was requeued (or the feed ends): its first Island's output is no longer
        its output."""
        if self.island is not None:
            island, self.island = self.island, None
            await island_outputs().unwatch(island, self.job.pk)

    async def batches(self, *, heartbeat: float | None = None) -> AsyncIterator[list[dict]]:
        """Batches of events in order, ending with ``done`` or ``error``; an empty batch
        after ``heartbeat`` seconds without events."""
        heartbeat = settings.SSE_HEARTBEAT_SECONDS if heartbeat is None else heartbeat
        if not self.subs:
            yield await _replay_finished(self.job)
            return
        relay, found_final = self.relay, 0
        try:
            while not relay.ended:
                if self.live_since is not None and self.live_since != loop_epoch():
                    await self._to_stream()
                # The first token goes out at once; later ones may wait for company.
                raws = await self.inbox.take(heartbeat, LINGER_SECONDS if relay.sent else 0.0)
                if raws:
                    found_final = 0
                    strict = self.live_since is not None
                    batch = []
                    for raw, msg_id in raws:
                        event = relay.accept(_decode(raw), msg_id, strict=strict)
                        if event is not None:
                            batch.append(event)
                            if event["type"] == "status" and event.get("state") == "queued":
                                await self._leave_island()
                        if relay.lost:
                            break
                    if batch:
                        yield batch
                    if relay.lost:
                        await self._to_stream()
                    continue
                yield []
                row = await in_thread(_job_row, self.job.pk)
                found_final = found_final + 1 if row is None or row.status in Job.FINAL else 0
                if found_final >= 2:
                    yield relay.finish_from(row) if row else []
                    return
        finally:
            await self.close()

    async def close(self) -> None:
        await self._leave_island()
        subs, self.subs = self.subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection is gone: so is the subscription
                logger.debug("could not unsubscribe", exc_info=True)


async def job_events(job: Job, *, heartbeat: float | None = None) -> AsyncIterator[list[dict]]:
    """The events of a job this request did not publish itself: from the stream."""
    feed = await Feed.open(job)
    async for batch in feed.batches(heartbeat=heartbeat):
        yield batch
