"""`island sail subscribe` against the real NATS server of the test run."""

import asyncio
import json
import os
import subprocess
import sys

import nats
import pytest
from django.conf import settings

from sail.client import credentials


@pytest.fixture
def subscribe(home):
    """Start `island sail subscribe ARGS` and wait until it listens."""
    procs: list[subprocess.Popen] = []

    seed = home / "coordinator.seed"  # the Sail admits nobody anonymously
    seed.write_text(credentials()["nkeys_seed_str"])
    seed.chmod(0o600)

    def start(*args: str) -> subprocess.Popen:
        env = {**os.environ, "HOME": str(home), "ARCHIPELAG_NATS_URL": settings.NATS_URL,
               "ARCHIPELAG_NKEY": str(seed)}  # fmt: skip
        cmd = [sys.executable, "-m", "island_cli", "sail", "subscribe", *args]
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs.append(proc)
        ready = proc.stderr.readline()
        assert ready.startswith("Listening on"), ready + proc.stderr.read()
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def publish(*messages: tuple[str, bytes]) -> None:
    async def send() -> None:
        nc = await nats.connect(settings.NATS_URL, **credentials())
        for subject, payload in messages:
            await nc.publish(subject, payload)
        await nc.flush()
        await nc.close()

    asyncio.run(send())


MESSAGES = [
    ("test.cli.heartbeat", b'{"load": 0.5, "name": "gpu-beast"}'),
    ("test.cli.status", b"not json at all"),
    ("test.cli.heartbeat", b'{"after": "the limit"}'),
]


def test_subscribe_prints_max_messages_with_sequence_subject_and_payload(subscribe):
    proc = subscribe("test.cli.*", "--max", "2")

    publish(*MESSAGES)

    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out.splitlines() == [
        '[1] test.cli.heartbeat {"load": 0.5, "name": "gpu-beast"}',
        "[2] test.cli.status not json at all",
    ]


def test_subscribe_as_json_prints_one_json_object_per_line(subscribe):
    proc = subscribe("test.cli.>", "--max", "2", "--format", "json")

    publish(*MESSAGES)

    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == [
        {"seq": 1, "subject": "test.cli.heartbeat", "data": {"load": 0.5, "name": "gpu-beast"}},
        {"seq": 2, "subject": "test.cli.status", "data": "not json at all"},
    ]
