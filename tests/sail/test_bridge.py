"""The bridge end to end: real NATS with JetStream, the test database, eager Celery."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable

import nats
import orjson
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from nats.js.api import StorageType
from nats.js.errors import NotFoundError

from compute.models import Island
from config.celery import app as celery_app
from sail import keys, streams
from sail.bridge import Bridge, call_sync
from sail.client import credentials
from tests.conftest import BASE_DIR, server_env
from tests.sail import messages

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def eager() -> None:
    """Celery tasks run inside the bridge, as soon as it queues them."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
async def nc() -> AsyncIterator[nats.NATS]:
    """A client connection, like an Island's; the streams start empty."""
    client = await nats.connect(settings.NATS_URL, **credentials())
    js = client.jetstream()
    for name in (streams.ISLANDS.name, streams.JOB_EVENTS.name):
        with contextlib.suppress(NotFoundError):
            await js.purge_stream(name)
    yield client
    await client.close()


async def start_bridge() -> tuple[Bridge, asyncio.Task]:
    bridge = Bridge(batch_wait=0.02)
    task = asyncio.create_task(bridge.run())
    await asyncio.wait_for(bridge.ready.wait(), 15)
    return bridge, task


async def stop_bridge(bridge: Bridge, task: asyncio.Task) -> None:
    bridge.stop()
    await asyncio.wait_for(task, 10)


@pytest.fixture
async def bridge(eager, nc) -> AsyncIterator[Bridge]:
    """The bridge, running in this event loop."""
    bridge, task = await start_bridge()
    yield bridge
    await stop_bridge(bridge, task)
    assert task.exception() is None


async def eventually(check: Callable[[], object], within: float = 10.0) -> object:
    deadline = time.monotonic() + within
    while True:
        result = await sync_to_async(call_sync)(check)
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


def island(host_id: str) -> Island | None:
    return Island.objects.filter(pk=host_id).first()


async def publish(nc, subject: str, payload: dict | bytes) -> None:
    await nc.publish(subject, payload if isinstance(payload, bytes) else orjson.dumps(payload))
    await nc.flush()


async def test_registration_and_heartbeat_reach_the_database(bridge, nc):
    host_id = str(uuid.uuid4())
    await publish(nc, f"host.{host_id}.register", messages.register(host_id))
    assert await eventually(lambda: island(host_id))
    await publish(nc, f"host.{host_id}.heartbeat", messages.heartbeat(host_id))
    assert await eventually(lambda: island(host_id).status == "online")
    assert (await sync_to_async(call_sync)(island, host_id)).warm_workloads == ["llama-3-8b", 7]


async def test_it_acks_messages_only_once_they_are_stored(bridge, nc):
    js = nc.jetstream()
    consumer = streams.CONSUMERS["ISLANDS"].durable
    host_id = str(uuid.uuid4())
    await publish(nc, f"host.{host_id}.register", messages.register(host_id))
    await eventually(lambda: island(host_id))
    info = await js.consumer_info("ISLANDS", consumer)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_a_failed_store_leaves_the_message_unacked(bridge, nc, monkeypatch):
    def broken(*, records):
        raise RuntimeError("database is gone")

    monkeypatch.setattr("compute.services.islands.ingest_heartbeats", broken)
    host_id = str(uuid.uuid4())
    await publish(nc, f"host.{host_id}.heartbeat", messages.heartbeat(host_id))
    js = nc.jetstream()
    consumer = streams.CONSUMERS["ISLANDS"].durable
    for _ in range(100):
        info = await js.consumer_info("ISLANDS", consumer)
        if info.delivered.stream_seq:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert (await js.consumer_info("ISLANDS", consumer)).num_ack_pending == 1


async def test_a_bridge_restart_loses_nothing(eager, nc):
    bridge, task = await start_bridge()
    await stop_bridge(bridge, task)
    host_id = str(uuid.uuid4())
    await publish(nc, f"host.{host_id}.register", messages.register(host_id))
    await publish(nc, f"host.{host_id}.heartbeat", messages.heartbeat(host_id))
    await asyncio.sleep(0.2)
    assert not await sync_to_async(call_sync)(island, host_id)
    bridge, task = await start_bridge()
    try:
        assert await eventually(lambda: island(host_id) and island(host_id).status == "online")
    finally:
        await stop_bridge(bridge, task)


async def test_ping_is_answered_at_once(bridge, nc):
    started = time.monotonic()
    reply = await nc.request(f"host.{uuid.uuid4()}.ping", b"{}", timeout=2)
    assert orjson.loads(reply.data)["pong"] is True
    assert time.monotonic() - started < 0.5


async def test_pairing_is_answered_with_a_code_bound_to_the_key_that_asked(bridge, nc):
    host_id, key = str(uuid.uuid4()), keys.public_key(keys.new_seed())
    request = orjson.dumps({"host_id": host_id, **messages.register(host_id)})
    reply = await nc.request(f"coordinator.hosts.pairing.{key}", request, timeout=5)
    body = orjson.loads(reply.data)
    assert body["success"] is True
    assert len(body["code"]) == 6
    assert (await sync_to_async(call_sync)(island, host_id)).nkey == key


async def test_a_field_islands_pairing_is_answered_without_a_key(bridge, nc):
    host_id = str(uuid.uuid4())
    await publish(nc, "field.coordinator.hosts.register", messages.register(host_id))
    await eventually(lambda: island(host_id))
    request = orjson.dumps({"host_id": host_id})
    reply = await nc.request("field.coordinator.hosts.pairing", request, timeout=5)
    assert orjson.loads(reply.data)["success"] is True
    assert (await sync_to_async(call_sync)(island, host_id)).nkey is None


MALFORMED = [
    b"",
    b"not json",
    b"[]",
    b'{"host_id": 42}',
    b'{"host_id": "%(id)s", "active_jobs": "many", "capabilities": []}',
    b'{"host_id": "%(id)s", "name": "\\u0000"}',
    b'{"host_id": "%(id)s", "junk": "' + b"x" * 70_000 + b'"}',
]
KEY = keys.public_key(keys.new_seed())
SUBJECTS = [
    "host.%(id)s.register",
    "host.%(id)s.heartbeat",
    "host.%(id)s.status",
    "host.%(id)s.output",
    "host.%(id)s.progress",
    "host.%(id)s.image",
    "host.%(id)s.lease",
    "host.%(id)s.ping",
    f"coordinator.hosts.pairing.{KEY}",
    "field.coordinator.hosts.register",
    "field.host.%(id)s.heartbeat",
    "field.host.%(id)s.status",
    "field.coordinator.hosts.pairing",
]


async def test_malformed_messages_on_every_subject_leave_the_bridge_running(bridge, nc):
    bad_id = str(uuid.uuid4())
    for subject in SUBJECTS:
        for number, payload in enumerate(MALFORMED):
            subject_ = subject % {"id": bad_id}
            # a pairing request is valid with any extra field, and pairing may create the Island
            sender = str(uuid.uuid4()) if "pairing" in subject else bad_id
            data = payload % {b"id": sender.encode()} if b"%(id)s" in payload else payload
            if subject_.endswith(("ping", "pairing")):
                reply = orjson.loads((await nc.request(subject_, data, timeout=5)).data)
                if subject_.endswith("pairing") and number < 4:  # no usable host_id
                    assert reply["success"] is False
            else:
                await nc.publish(subject_, data)
    await nc.flush()

    host_id = str(uuid.uuid4())
    await publish(nc, f"host.{host_id}.register", messages.register(host_id))
    await publish(nc, f"host.{host_id}.heartbeat", messages.heartbeat(host_id))
    assert await eventually(lambda: island(host_id) and island(host_id).status == "online")
    assert not await sync_to_async(call_sync)(island, bad_id)
    info = await nc.jetstream().consumer_info("ISLANDS", streams.CONSUMERS["ISLANDS"].durable)
    assert info.num_ack_pending == 0  # bad ones are terminated, not redelivered


def test_the_command_stops_cleanly_on_sigterm():
    env = {**server_env(), "CELERY_TASK_ALWAYS_EAGER": "true"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "sail_bridge"],
        env=env, cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20

        async def ping() -> bool:
            client = await nats.connect(settings.NATS_URL, **credentials())
            try:
                await client.request(f"host.{uuid.uuid4()}.ping", b"", timeout=0.5)
                return True
            except Exception:
                return False
            finally:
                await client.close()

        while not asyncio.run(ping()):
            assert time.monotonic() < deadline, "the bridge did not start"
        os.kill(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=15)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "bridge stopped" in output


async def test_a_replay_stream_on_file_is_made_anew_in_memory_and_a_durable_one_is_kept(nc):
    """GIVEN JOB_UPDATES stored on file (as older versions made it) and a durable stream
    whose storage differs WHEN the streams are ensured THEN JOB_UPDATES is replaced by
    one in memory, and the durable stream is left as it is, its messages kept."""
    from dataclasses import replace

    js = nc.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(streams.JOB_UPDATES_STREAM)
    await js.add_stream(replace(streams.JOB_UPDATES, storage=StorageType.FILE))
    assert await streams.ensure_stream(js, streams.JOB_UPDATES) == "replaced"
    info = await js.stream_info(streams.JOB_UPDATES_STREAM)
    assert info.config.storage == StorageType.MEMORY

    await nc.publish("host.00000000-0000-0000-0000-000000000001.status", b"{}")
    await nc.flush()
    kept = (await js.stream_info(streams.JOB_EVENTS.name)).state.messages
    in_memory = replace(streams.JOB_EVENTS, storage=StorageType.MEMORY)
    with pytest.raises(nats.js.errors.APIError):  # the server refuses; ensure_all logs it
        await streams.ensure_stream(js, in_memory)
    assert (await js.stream_info(streams.JOB_EVENTS.name)).state.messages == kept >= 1
