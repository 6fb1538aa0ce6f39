"""The SSE pieces directly, on a real NATS server: keep-alive comments, the end of a job
whose last events were never published, and the relay's duplicate rules."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from compute import feed, streaming
from compute.feed import Relay
from compute.models import Job
from compute.services.lifecycle import event_token
from compute.services.publish import publish_job_events
from tests.compute.jobs_support import running_job
from tests.factories import CargoFactory, IslandFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("streams")]


@pytest.fixture(autouse=True)
async def _close_db_of_the_sync_thread():
    """The ORM calls of these tests run in asgiref's thread; close its connection after."""
    yield
    await sync_to_async(connections.close_all)()


def a_running_job() -> Job:
    return running_job(CargoFactory(), IslandFactory())


async def test_a_quiet_stream_sends_keep_alive_comments(settings):
    settings.SSE_HEARTBEAT_SECONDS = 0.1
    job = await sync_to_async(a_running_job)()
    stream = streaming._job_sse(job)
    try:
        first = await asyncio.wait_for(anext(stream), 2)
        assert first == b": keep-alive\n\n"
        await sync_to_async(publish_job_events)(job.pk, [event_token(job.pk, 1, 1, "hi")])
        chunk = await asyncio.wait_for(anext(stream), 2)
        while chunk == b": keep-alive\n\n":
            chunk = await asyncio.wait_for(anext(stream), 2)
        assert chunk.startswith(b"event: token\ndata: {")
    finally:
        await stream.aclose()


async def test_a_job_that_ended_without_its_last_events_ends_from_its_row():
    """GIVEN a job whose tokens were published but whose end never was
    WHEN the database says it completed
    THEN a few heartbeats later the stream sends the rest of the output and done."""
    job = await sync_to_async(a_running_job)()
    await sync_to_async(publish_job_events)(job.pk, [event_token(job.pk, 1, 1, "Hello")])
    batches = feed.job_events(job, heartbeat=0.1)
    first = await asyncio.wait_for(anext(batches), 2)
    assert [e["content"] for e in first] == ["Hello"]
    await Job.objects.filter(pk=job.pk).aupdate(
        status="completed", output="Hello world", prompt_tokens=1, completion_tokens=2
    )
    rest = [e async for batch in batches for e in batch]
    assert [(e["type"], e.get("content")) for e in rest] == [
        ("token", " world"), ("status", None), ("done", None),
    ]  # fmt: skip
    assert rest[-1]["usage"]["total_tokens"] == 3


def test_the_relay_drops_a_token_seen_before():
    relay = Relay("j")
    assert relay.accept({"type": "token", "seq": 1, "content": "a"})
    assert relay.accept({"type": "token", "seq": 1, "content": "a"}) is None
    assert relay.accept({"type": "token", "seq": 2, "content": "b"})["content"] == "b"


def test_the_relay_passes_on_only_new_text_of_a_requeued_attempt():
    relay = Relay("j")
    relay.accept({"type": "token", "seq": 1, "content": "abc"})
    relay.accept({"type": "status", "state": "queued"})
    assert relay.accept({"type": "token", "seq": 1, "content": "ab"}) is None
    assert relay.accept({"type": "token", "seq": 2, "content": "cde"})["content"] == "de"


def test_the_relay_ignores_unknown_events_and_everything_after_the_end():
    relay = Relay("j")
    assert relay.accept({"type": "surprise"}) is None
    assert relay.accept("not an object") is None
    assert relay.accept({"type": "error", "error": "boom"})
    assert relay.accept({"type": "token", "seq": 1, "content": "late"}) is None
