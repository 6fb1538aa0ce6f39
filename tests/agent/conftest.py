"""Fixtures for the reference Island agent. The agent runs as a real process
(``python -m island_cli.agent``) against the suite's NATS server, which runs the Sail's
configuration (sail.server_config): nobody connects anonymously. The test plays the
coordinator (tests/agent/coordinator.py), with its auth callout.

An agent starts with its own key by default (the seed written beforehand, so that the
test knows the key) and paired; ``paired=False`` leaves its key unpaired, ``field=True``
starts it as an upstream agent would, with the shared field user's password."""

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nats
import pytest
import tomli_w
from island_cli.agent.identity import SEED_FILE
from nats.aio.client import Client

from sail import keys, subjects
from sail.client import credentials

from .coordinator import (
    WAIT,
    Admissions,
    Coordinator,
    ensure_jobs_stream,
    forget_islands,
    running_callout,
)

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
REFUSED = "permissions violation"  # as nats-py reports it


def field_url(nats_url: str = NATS_URL) -> str:
    """``nats_url`` with the shared field user's name and password in it."""
    password = os.environ.get("SAIL_FIELD_PASSWORD")
    if not password:
        pytest.skip("the suite's NATS server has no field user (SAIL_FIELD_PASSWORD)")
    user = os.environ.get("SAIL_FIELD_USER") or "island"
    return nats_url.replace("://", f"://{quote(user)}:{quote(password, safe='')}@", 1)


def write_seed(state_dir: Path) -> str:
    """A new key for an Island, as it would make it on first start; its public key."""
    state_dir.mkdir(parents=True, exist_ok=True)
    seed = keys.new_seed()
    path = state_dir / SEED_FILE
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(seed + "\n")
    return keys.public_key(seed)


def own_key(state_dir: Path, *, make: bool) -> str | None:
    """The key of the Island's seed: the one in ``state_dir``, else a new one if
    ``make``, else None (the agent is to make it)."""
    if (state_dir / SEED_FILE).exists():
        return key_of(state_dir)
    return write_seed(state_dir) if make else None


def key_of(state_dir: Path) -> str | None:
    """The public key of the seed in ``state_dir``, None if it holds none."""
    try:
        return keys.public_key((state_dir / SEED_FILE).read_text().strip())
    except Exception:  # a damaged file, left for the agent to refuse
        return None


class AgentProcess:
    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        host_id: str,
        state_dir: Path,
        *,
        key: str | None,
    ):
        self.proc = proc
        self.host_id = host_id
        self.state_dir = state_dir
        self.key = key  # None: the field user
        self.lines: list[str] = []
        self.errors: list[str] = []
        # Whether the server may refuse it something (a test that unpairs it while it
        # works); otherwise it must never try what its permissions do not allow.
        self.refusals_expected = False
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

    async def wait_for_line(self, text: str, within: float = WAIT, *, after: int = 0) -> str:
        """The first line printed (from line number ``after`` on) that contains ``text``."""

        def found() -> str | None:
            return next((line for line in self.lines[after:] if text in line), None)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), within)
            except TimeoutError:
                raise AssertionError(
                    f"{text!r} not printed; stdout={self.lines} stderr={self.errors}"
                ) from None
        return found()  # type: ignore[return-value]

    def refusals(self) -> list[str]:
        """What the server refused it (nats-py reports it, the agent logs it)."""
        return [line for line in self.errors if REFUSED in line.lower()]

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
def admissions() -> Admissions:
    """Which keys the test's auth callout admits as paired Islands."""
    return Admissions()


@pytest.fixture
async def nc() -> AsyncIterator[Client]:
    """A nats-py connection to the suite's NATS server, as the coordinator."""
    client = await nats.connect(NATS_URL, **credentials())
    yield client
    await client.close()


@pytest.fixture
def callout_threads(django_db_blocker) -> Iterator[None]:
    """Lets the callout's threads touch the database layer: it answers on core.tx's
    shared threads, which close the connections earlier tests left them
    (close_old_connections) before they call the test's admit, which needs none."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
async def coordinator(nc, admissions, callout_threads) -> AsyncIterator[Coordinator]:
    """The test's coordinator and its auth callout, with the JOBS stream in place (left
    as it was found)."""
    js = nc.jetstream()
    created = await ensure_jobs_stream(js)
    coordinator = Coordinator(nc, admissions)
    await coordinator.start()
    async with running_callout(NATS_URL, js, admissions):
        yield coordinator
    if created:
        await js.delete_stream(subjects.JOBS_STREAM)
    else:
        await forget_islands(js, admissions.hosts())


@pytest.fixture
async def start_agent(tmp_path, admissions) -> AsyncIterator[Any]:
    """Starts ``python -m island_cli.agent`` with a config written from keyword arguments.

    With its own key (the default), its seed is written first unless one is there, or
    ``make_key=False``; ``paired`` pairs the key with its host_id. ``field=True``: the
    shared field user's password in its nats_url, and no key."""
    agents: list[AgentProcess] = []

    async def start(
        *args: str,
        host_id: str | None = "new",
        nats_url: str = NATS_URL,
        field: bool = False,
        paired: bool = True,
        make_key: bool = True,
        wait_connected: bool = True,
        **agent: Any,
    ) -> AgentProcess:
        host_id = str(uuid.uuid4()) if host_id == "new" else host_id
        state_dir = tmp_path / "state"
        key = None
        if field:
            nats_url = field_url(nats_url)
        else:
            key = own_key(state_dir, make=make_key)
            if paired:
                assert key is not None, "no key to pair (make_key=False)"
                assert host_id is not None, "a key is paired with a known host_id"
                admissions.paired[key] = host_id
        path = agent_config(tmp_path, host_id, nats_url, **agent)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "island_cli.agent", "--config", str(path), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        process = AgentProcess(proc, host_id or "", state_dir, key=key)
        agents.append(process)
        if wait_connected:
            await process.wait_for_line("Connected")
        return process

    yield start
    for process in agents:
        with contextlib.suppress(ProcessLookupError):
            await process.kill()
    for process in agents:
        if not process.refusals_expected:
            assert process.refusals() == [], "the agent tried what its permissions do not allow"
