"""The connection on a private nats-server (the Sail's configuration, with the test's
auth callout) that the test can stop and restart: the client name, and registering again
(and taking jobs) after the server comes back."""

import asyncio
import contextlib
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest
from django.conf import settings

from sail import keys, server_config
from sail.client import credentials

from .coordinator import Coordinator, ensure_jobs_stream, job, running_callout

NATS_SERVER = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which(
    "nats-server"
)
pytestmark = pytest.mark.skipif(NATS_SERVER is None, reason="needs the nats-server binary")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateNats:
    def __init__(self, store: Path):
        self.port, self.monitor_port = free_port(), free_port()
        self.store = store
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = self.store.parent / "nats.conf"
        config.write_text(
            server_config.render(
                server_config.Server("127.0.0.1", self.port, str(self.store), self.monitor_port),
                keys.CoordinatorKeys.from_secret(settings.SAIL_SECRET),
            )
        )
        self.proc = await asyncio.create_subprocess_exec(NATS_SERVER, "-c", str(config))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            await self.proc.wait()


@pytest.fixture
async def private_nats(tmp_path) -> AsyncIterator[PrivateNats]:
    """A nats-server of the Sail's configuration, with monitoring, only for this test."""
    server = PrivateNats(tmp_path / "js")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def private_coordinator(
    private_nats, admissions, callout_threads
) -> AsyncIterator[Coordinator]:
    """The test's coordinator and auth callout on the private server, with a JOBS stream."""
    client = await nats.connect(
        private_nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1, **credentials()
    )
    coordinator = Coordinator(client, admissions)
    await coordinator.start()
    await ensure_jobs_stream(coordinator.js)
    async with running_callout(private_nats.url, coordinator.js, admissions):
        yield coordinator
    await client.close()


async def test_its_client_name_is_island_and_the_start_of_its_host_id(
    private_nats, private_coordinator, start_agent
):
    agent = await start_agent(nats_url=private_nats.url)

    async with httpx.AsyncClient() as client:
        connz = (await client.get(f"http://127.0.0.1:{private_nats.monitor_port}/connz")).json()

    names = [c.get("name") for c in connz["connections"]]
    assert f"island-{agent.host_id[:8]}" in names


async def test_after_its_nats_server_restarts_it_registers_again_and_takes_jobs(
    private_nats, private_coordinator, start_agent
):
    coordinator = private_coordinator
    agent = await start_agent(nats_url=private_nats.url)
    await coordinator.wait_for("register", host_id=agent.host_id)

    await private_nats.stop()
    await private_nats.start()

    # Its backoff, and keys wait for the callout's own reconnection: seconds.
    await coordinator.wait_for("register", host_id=agent.host_id, count=2, within=30)
    await coordinator.wait_for(
        "heartbeat",
        lambda m: m["_n"] > coordinator.of("register")[-1]["_n"],
        host_id=agent.host_id,
    )
    assignment = job()
    await coordinator.assign(agent.host_id, assignment)
    await coordinator.succeeded(assignment["job_id"], within=15)
