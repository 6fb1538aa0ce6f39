"""A job's events read live from the start (compute.feed), on a real NATS server: the
Island's own output, the relay's and worker's copies, a loss that sends the feed back to
the stream, and a requeue."""

import asyncio
import uuid

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from compute.feed import Feed, Relay
from compute.services.jobs import client_event
from compute.services.lifecycle import event_token
from compute.services.publish import Assignment, job_events_subject
from sail import client as sail_client
from sail.client import loop_connection
from tests.compute.jobs_support import running_job
from tests.factories import CargoFactory, IslandFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("streams")]


@pytest.fixture(autouse=True)
async def _close_db_of_the_sync_thread():
    """The ORM calls of these tests run in asgiref's thread; close its connection after."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
async def job():
    """A job running on an Island (its first attempt)."""
    return await sync_to_async(lambda: running_job(CargoFactory(), IslandFactory()))()


def assigned(job) -> Assignment:
    return Assignment(job_id=job.pk, island_id=str(job.island_id), attempt=1, payload={})


async def publish(job, events) -> None:
    """Events on jobs.{id}.events, as the relay and the worker publish them."""
    nc = await loop_connection()
    for msg_id, event in events:
        await nc.publish(
            job_events_subject(job.pk), orjson.dumps(event), headers={"Nats-Msg-Id": msg_id}
        )
    await nc.flush()


async def island_output(job, seq: int, chunk: str, *, island=None) -> None:
    """A chunk as the Island itself publishes it on host.{id}.output."""
    nc = await loop_connection()
    body = {"job_id": str(job.pk), "seq": seq, "chunk": chunk}
    await nc.publish(f"host.{island or job.island_id}.output", orjson.dumps(body))
    await nc.flush()


async def read(feed: Feed) -> list[dict]:
    events = []
    async for batch in feed.batches(heartbeat=2):
        events += batch
    return events


def done(job):
    return client_event(job.pk, "done", "done", usage={"total_tokens": 3})


async def test_a_live_feed_passes_each_token_once_whichever_copy_comes_first(job):
    """GIVEN a feed opened before the job's assignment went out
    WHEN the Island's chunks, then the relay's and the worker's copies of them arrive
    THEN the client gets each token once, in order, then done."""
    feed = await Feed.open(job, assignment=assigned(job))
    reading = asyncio.create_task(read(feed))
    await island_output(job, 1, "Hel")
    await island_output(job, 2, "lo")
    await island_output(job, 2, "lo")  # the Island sent it twice
    copies = [event_token(job.pk, 1, 1, "Hel"), event_token(job.pk, 1, 2, "lo")]
    await publish(job, copies + copies + [done(job)])  # relay, worker, then the end
    events = await asyncio.wait_for(reading, 5)
    assert [(e["type"], e.get("content")) for e in events] == [
        ("token", "Hel"), ("token", "lo"), ("done", None),
    ]  # fmt: skip


async def test_the_islands_own_output_reaches_the_client_before_any_copy_of_it(job):
    feed = await Feed.open(job, assignment=assigned(job))
    batches = feed.batches(heartbeat=2)
    await island_output(job, 1, "first")
    first = await asyncio.wait_for(anext(batches), 2)
    assert [(e["type"], e["content"]) for e in first] == [("token", "first")]
    await batches.aclose()


async def test_another_jobs_output_on_the_same_island_is_not_this_jobs(job):
    feed = await Feed.open(job, assignment=assigned(job))
    reading = asyncio.create_task(read(feed))
    nc = await loop_connection()
    other = {"job_id": str(uuid.uuid4()), "seq": 1, "chunk": "not mine"}
    await nc.publish(f"host.{job.island_id}.output", orjson.dumps(other))
    await nc.publish(f"host.{job.island_id}.output", b"not even json")
    await island_output(job, 1, "mine")
    await publish(job, [event_token(job.pk, 1, 1, "mine"), done(job)])  # as the worker does
    events = await asyncio.wait_for(reading, 5)
    assert [e.get("content") for e in events if e["type"] == "token"] == ["mine"]


async def test_a_hole_in_the_live_tokens_sends_the_feed_to_the_stream_without_repeats(job):
    """GIVEN tokens 1 and 2 already in the stream, missed by a live feed opened later
    WHEN token 3 comes live THEN the feed reads the stream again from its start and
    the client gets 1, 2 and 3 once each."""
    await publish(job, [event_token(job.pk, 1, 1, "a"), event_token(job.pk, 1, 2, "b")])
    feed = await Feed.open(job, assignment=assigned(job))
    reading = asyncio.create_task(read(feed))
    await island_output(job, 3, "c")  # live only: the stream gets it from the relay next
    await asyncio.sleep(0.2)
    await publish(job, [event_token(job.pk, 1, 3, "c"), done(job)])
    events = await asyncio.wait_for(reading, 5)
    assert [e.get("content") for e in events if e["type"] == "token"] == ["a", "b", "c"]
    assert events[-1]["type"] == "done"


async def test_a_connection_that_may_have_dropped_messages_sends_the_feed_to_the_stream(job):
    feed = await Feed.open(job, assignment=assigned(job))
    reading = asyncio.create_task(read(feed))
    await island_output(job, 1, "a")
    await asyncio.sleep(0.2)
    sail_client._loop_connection.epoch += 1  # as a disconnection or a slow consumer does
    await publish(job, [event_token(job.pk, 1, 1, "a"), event_token(job.pk, 1, 2, "b")])
    await asyncio.sleep(0.2)
    await publish(job, [done(job)])
    events = await asyncio.wait_for(reading, 5)
    assert [e.get("content") for e in events if e["type"] == "token"] == ["a", "b"]
    assert feed.live_since is None  # it reads the stream now


async def test_after_a_requeue_the_first_islands_output_is_not_the_jobs(job):
    feed = await Feed.open(job, assignment=assigned(job))
    reading = asyncio.create_task(read(feed))
    await island_output(job, 1, "one")
    await publish(job, [event_token(job.pk, 1, 1, "one")])
    await publish(job, [client_event(job.pk, "1:s:requeued", "status", state="queued")])
    await asyncio.sleep(0.2)
    await island_output(job, 2, " stale")  # the first Island did not stop at once
    await publish(job, [event_token(job.pk, 2, 1, "one"), event_token(job.pk, 2, 2, " two")])
    await publish(job, [done(job)])
    events = await asyncio.wait_for(reading, 5)
    assert "".join(e["content"] for e in events if e["type"] == "token") == "one two"


def test_the_relay_drops_an_event_whose_message_id_it_passed_on():
    relay = Relay("j")
    event = {"type": "status", "state": "running"}
    assert relay.accept(event, "j:1:s:started") == event
    assert relay.accept(event, "j:1:s:started") is None


def test_a_strict_relay_holds_back_a_token_beyond_a_hole_and_marks_the_loss():
    relay = Relay("j")
    assert relay.accept({"type": "token", "seq": 1, "content": "a"}, "j:1:t:1", strict=True)
    assert relay.accept({"type": "token", "seq": 3, "content": "c"}, "j:1:t:3", strict=True) is None
    assert relay.lost
    assert "j:1:t:3" not in relay.seen  # it comes again from the stream
