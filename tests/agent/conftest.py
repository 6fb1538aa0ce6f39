"""Fixtures for the reference Island agent. The agent runs as a real process
(``python -m island_cli.agent``) against the suite's NATS server with JetStream; the test
plays the coordinator with nats-py."""

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import tomli_w
from nats.aio.client import Client
from nats.js.api import StreamConfig

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
WAIT = 10.0


class Coordinator:
    """The coordinator's side of the protocol, recording what Islands publish."""

    def __init__(self, nc: Client):
        self.nc = nc
        self.js = nc.jetstream()
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._changed = asyncio.Condition()
        self.pairing_replies: list[dict[str, Any]] = [
            {
                "success": True,
                "code": "A3X9K2",
                "expires_in_seconds": 600,
                "pair_url": "http://portal.test/pair",
            }
        ]
        self.pairing_requests: list[dict[str, Any]] = []
        self.received = 0

    async def start(self) -> None:
        for subject in ("coordinator.hosts.register", "host.*.*"):
            await self.nc.subscribe(subject, cb=self._record)
        await self.nc.subscribe("coordinator.hosts.pairing", cb=self._pairing)
        await self.nc.subscribe("host.*.ping", cb=self._ping)
        await self.nc.flush()

    async def _record(self, msg: Any) -> None:
        kind = msg.subject if msg.subject.startswith("coordinator.") else msg.subject.split(".")[-1]
        if kind == "ping":
            return
        try:
            payload = json.loads(msg.data)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        payload["_subject"] = msg.subject
        async with self._changed:
            self.received += 1
            payload["_n"] = self.received
            self.messages[kind].append(payload)
            self._changed.notify_all()

    async def _pairing(self, msg: Any) -> None:
        self.pairing_requests.append(json.loads(msg.data))
        reply = self.pairing_replies[min(len(self.pairing_requests), len(self.pairing_replies)) - 1]
        await msg.respond(json.dumps(reply).encode())

    async def _ping(self, msg: Any) -> None:
        await msg.respond(b"{}")

    def of(
        self, kind: str, host_id: str | None = None, job_id: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages[kind]
            if (host_id is None or m.get("host_id", m["_subject"].split(".")[1]) == host_id)
            and (job_id is None or m.get("job_id") == job_id)
        ]

    async def wait_for(
        self,
        kind: str,
        predicate=lambda m: True,
        *,
        count: int = 1,
        within: float = WAIT,
        **filters: Any,
    ) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
        """The first ``count`` messages of ``kind`` that match, waiting for them."""

        def matching() -> list[dict[str, Any]]:
            return [m for m in self.of(kind, **filters) if predicate(m)]

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(matching()) >= count), within)
        return matching()[:count]

    async def states(self, job_id: str) -> list[str]:
        return [m["state"] for m in self.of("status", job_id=job_id)]

    async def assign(self, host_id: str, job: dict[str, Any], *, core: bool = False) -> None:
        subject = f"host.{host_id}.jobs"
        if core:
            await self.nc.publish(subject, json.dumps(job).encode())
        else:
            await self.js.publish(subject, json.dumps(job).encode(), stream="JOBS")

    async def send(self, host_id: str, kind: str, payload: dict[str, Any]) -> None:
        await self.nc.publish(f"host.{host_id}.{kind}", json.dumps(payload).encode())
        await self.nc.flush()


def job(runtime_type: str = "container", **fields: Any) -> dict[str, Any]:
    """A job assignment of the protocol."""
    return {
        "job_id": str(uuid.uuid4()),
        "workload_id": "llm-chat",
        "input": {"messages": [{"role": "user", "content": "hello island"}], "max_tokens": 64},
        "lease_expires": 0,
        "runtime_type": runtime_type,
        **fields,
    }


class AgentProcess:
    def __init__(self, proc: asyncio.subprocess.Process, host_id: str, state_dir: Path):
        self.proc = proc
        self.host_id = host_id
        self.state_dir = state_dir
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._changed = asyncio.Condition()
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, self.lines)),  # type: ignore[arg-type]
            asyncio.create_task(self._read(proc.stderr, self.errors)),  # type: ignore[arg-type]
        ]

    async def _read(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        async for raw in stream:
            async with self._changed:
                into.append(raw.decode().rstrip("\n"))
                self._changed.notify_all()

    async def wait_for_line(self, text: str, within: float = WAIT) -> str:
        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), within)
            except TimeoutError:
                raise AssertionError(
                    f"{text!r} not printed; stdout={self.lines} stderr={self.errors}"
                ) from None
        return found()  # type: ignore[return-value]

    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "state.json").read_text())

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    async def wait(self, within: float = WAIT) -> int:
        code = await asyncio.wait_for(self.proc.wait(), within)
        await asyncio.gather(*self._readers)
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for reader in self._readers:
            reader.cancel()


def agent_config(
    tmp_path: Path, host_id: str | None, nats_url: str = NATS_URL, **agent: Any
) -> Path:
    data: dict[str, Any] = {
        "host": {"name": "test-island", "region": "eu-west"},
        "coordinator": {"nats_url": nats_url, "api_url": "http://portal.test"},
        "pricing": {"default_price": "0.01", "workloads": {"llm-chat": "0.012", "sdxl": "0.05"}},
        "agent": {
            "state_dir": str(tmp_path / "state"),
            "mock_tokens_per_second": 0,
            "heartbeat_interval": 0.2,
            "lease_interval": 0.2,
            "shutdown_grace": 5,
            "stream_recheck_interval": 0.5,
            **agent,
        },
    }
    if host_id is not None:
        data["host_id"] = host_id
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.fixture
async def nc() -> AsyncIterator[Client]:
    """A nats-py connection to the suite's NATS server."""
    client = await nats.connect(NATS_URL)
    yield client
    await client.close()


@pytest.fixture
async def coordinator(nc) -> AsyncIterator[Coordinator]:
    """The test's coordinator, with the JOBS stream in place (left as it was found)."""
    js = nc.jetstream()
    created = False
    try:
        await js.stream_info("JOBS")
    except nats.js.errors.NotFoundError:
        await js.add_stream(StreamConfig(name="JOBS", subjects=["host.*.jobs"]))
        created = True
    coordinator = Coordinator(nc)
    await coordinator.start()
    yield coordinator
    if created:
        await js.delete_stream("JOBS")
        return
    for register in coordinator.messages["coordinator.hosts.register"]:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer("JOBS", f"host-{register['host_id']}")


@pytest.fixture
async def start_agent(tmp_path) -> AsyncIterator[Any]:
    """Starts ``python -m island_cli.agent`` with a config written from keyword arguments."""
    agents: list[AgentProcess] = []

    async def start(
        *args: str,
        host_id: str | None = "new",
        nats_url: str = NATS_URL,
        wait_connected: bool = True,
        **agent: Any,
    ) -> AgentProcess:
        host_id = str(uuid.uuid4()) if host_id == "new" else host_id
        path = agent_config(tmp_path, host_id, nats_url, **agent)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "island_cli.agent", "--config", str(path), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        process = AgentProcess(proc, host_id or "", tmp_path / "state")
        agents.append(process)
        if wait_connected:
            await process.wait_for_line("Connected")
        return process

    yield start
    for process in agents:
        with contextlib.suppress(ProcessLookupError):
            await process.kill()
