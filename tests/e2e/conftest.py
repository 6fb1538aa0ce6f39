"""End-to-end fixtures: the whole coordinator as separate processes (web, Celery worker,
NATS bridge) with fast liveness and lease settings, and real Island agents
(``python -m island_cli.agent`` with the mock runtime) as subprocesses.

The coordinator settings of these tests (``E2E_SETTINGS``) reach the child processes
through their environment and this process through pytest-django's ``settings``, so that
a sweep called here judges liveness as the web server and the worker do.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from django.conf import settings as django_settings

from compute.models import Island
from compute.seed import seed_cargos
from pairing import services as pairing
from portal import services
from portal.models import User
from tests.conftest import BASE_DIR, start_server, stop_server
from tests.stack_fixtures import Stack, start_workers, stop_workers

# Small numbers so that liveness, penalties and leases play out in seconds.
E2E_SETTINGS: dict[str, Any] = {
    "HEARTBEAT_OFFLINE_SECONDS": 2,
    "DISCONNECT_PENALTY_AFTER_SECONDS": 3,
    "DISCONNECT_KARMA_PENALTY": 1,
    "JOB_LEASE_SECONDS": 3,
    "SAIL_BATCH_WAIT_SECONDS": 0.05,
    "PLACEMENT_REFRESH_SECONDS": 0.2,
    "SSE_HEARTBEAT_SECONDS": 1.0,
}
PASSWORD = "correct horse battery"
WAIT = 15.0
# The agent's intervals: heartbeats and lease renewals several times a second.
AGENT_DEFAULTS: dict[str, Any] = {
    "mock_tokens_per_second": 0,
    "heartbeat_interval": 0.3,
    "lease_interval": 0.3,
    "lease_extend_seconds": 2,
    "shutdown_grace": 5,
    "pairing_retry": 0.5,
    "stream_recheck_interval": 0.5,
}


def eventually(check: Callable[[], Any], *, timeout: float = WAIT, interval: float = 0.05) -> Any:
    """The first truthy result of ``check()``, polling; fails with the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s; last result: {result!r}")
        time.sleep(interval)


# --- the coordinator -------------------------------------------------------------------
def _env() -> dict[str, str]:
    return {name: str(value) for name, value in E2E_SETTINGS.items()} | {"LOG_LEVEL": "WARNING"}


@contextlib.contextmanager
def coordinator(env: dict[str, str]) -> Iterator[Stack]:
    """Web, worker and bridge with ``env``, stopped in turn however the block ends."""
    server = start_server(env=env)
    try:
        stack = start_workers(server, env)
    except BaseException:
        stop_server(server)
        raise
    try:
        yield stack
    finally:
        stop_workers(stack)
        stop_server(server)


@pytest.fixture(scope="module")
def _e2e_processes(django_db_setup, django_db_blocker) -> Iterator[Stack]:
    """Web, worker and bridge of this module, with E2E_SETTINGS (module scope: a bridge
    left running would compete for the durable consumers with other modules' bridges)."""
    with coordinator(_env()) as stack:
        yield stack


@pytest.fixture
def e2e(_e2e_processes, transactional_db, settings) -> Stack:
    """The running coordinator on the (transactional) test database, the seed Cargos,
    and this process set up like the coordinator's processes."""
    for name, value in E2E_SETTINGS.items():
        setattr(settings, name, value)
    settings.PLACEMENT_REFRESH_IN_BACKGROUND = False
    for proc in (_e2e_processes.worker, _e2e_processes.bridge, _e2e_processes.server.proc):
        assert proc.poll() is None, "a coordinator process died"
    seed_cargos()
    return _e2e_processes


@pytest.fixture
def account(e2e) -> tuple[User, str]:
    """A new account and a full API key of it."""
    user = services.sign_up(email="ada@example.com", password=PASSWORD)
    return user, services.create_api_key(user=user, name="e2e")[1]


# --- the Island agent ------------------------------------------------------------------
class Agent:
    """One reference Island agent process; ``home`` holds its config and state, so a
    restart is the same Island."""

    def __init__(self, home: Path, config: dict[str, Any]):
        self.home = home
        self.config = config
        self.config_path = home / "config.toml"
        self.state_dir = Path(config["agent"]["state_dir"])
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.mark = 0  # wait_for_line looks from here on: lines of this start only
        self._changed = threading.Condition()
        home.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(tomli_w.dumps(config))

    # --- lifecycle
    def start(self) -> "Agent":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {
            **os.environ,
            "HOME": str(self.home),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(BASE_DIR / "cli"),
        }
        for name in ("ARCHIPELAG_NATS_URL", "ISLAND_CONFIG", "DJANGO_SETTINGS_MODULE"):
            env.pop(name, None)
        cmd = [sys.executable, "-m", "island_cli.agent", "--config", str(self.config_path)]
        with self._changed:
            self.mark = len(self.lines)
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=self.home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for stream, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()
        self.wait_for_line(r"^Connected")  # and registered, or waiting to be paired
        return self

    def _read(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            with self._changed:
                into.append(line.rstrip("\n"))
                self._changed.notify_all()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        """Signal the agent and wait for it to exit; returns its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signum)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: gone without a word, as a crash or a pulled plug."""
        self.stop(signal.SIGKILL)

    def restart(self) -> "Agent":
        if self.running:
            self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- what it says
    def wait_for_line(self, pattern: str, timeout: float = WAIT) -> re.Match:
        """The first line of this start matching the regular expression ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[self.mark :]:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout}s; "
                        f"stdout={self.lines[self.mark :]} stderr={self.errors[-20:]}"
                    )
                self._changed.wait(left)

    def printed(self, pattern: str) -> bool:
        with self._changed:
            return any(re.search(pattern, line) for line in self.lines[self.mark :])

    # --- what it keeps
    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "state.json").read_text())

    @property
    def host_id(self) -> str:
        return self.state()["host_id"]

    def island(self) -> Island | None:
        return Island.objects.filter(pk=self.host_id).first()

    def pairing_code(self) -> str:
        return self.wait_for_line(r"Pairing code: ([A-Z2-9]{6})").group(1)


@pytest.fixture
def agent(e2e, tmp_path) -> Iterator[Callable[..., Agent]]:
    """Start a reference Island agent: ``agent(name, pricing=, coordinator=, host_id=,
    start=, **agent_table_overrides)`` (a ``None`` in ``coordinator`` drops that key).
    Every agent is stopped at the end of the test (SIGKILL if SIGTERM is not enough)."""
    agents: list[Agent] = []

    def start(
        name: str = "island-a",
        *,
        pricing: dict[str, Any] | None = None,
        coordinator: dict[str, Any] | None = None,
        host_id: str | None = None,
        start: bool = True,
        **options: Any,
    ) -> Agent:
        home = tmp_path / f"{name}-{len(agents)}"
        urls = {"nats_url": django_settings.NATS_URL, "api_url": e2e.url, **(coordinator or {})}
        config = {
            "host": {"name": name, "region": "eu-west"},
            "coordinator": {k: v for k, v in urls.items() if v is not None},
            "pricing": pricing or {"default_price": "0.005"},
            "agent": {**AGENT_DEFAULTS, "state_dir": str(home / ".island"), **options},
        }
        if host_id is not None:
            config["host_id"] = host_id
        process = Agent(home, config)
        agents.append(process)
        return process.start() if start else process

    yield start
    for process in agents:
        if process.running:
            with contextlib.suppress(Exception):
                process.stop(signal.SIGTERM, timeout=10)
        if process.running:
            process.kill()


@pytest.fixture
def field_url() -> str:
    """The NATS URL of the shared field user (upstream agents' way in)."""
    user = os.environ.get("SAIL_FIELD_USER") or "island"
    password = os.environ["SAIL_FIELD_PASSWORD"]
    return django_settings.NATS_URL.replace("nats://", f"nats://{user}:{password}@", 1)


def registered(agent: Agent) -> Island:
    """The agent's Island once its registration reached the database."""
    return eventually(
        lambda: Island.objects.filter(pk=agent.host_id).exclude(capabilities={}).first()
    )


def online(agent: Agent) -> Island:
    """The agent's Island once a heartbeat made it online."""

    def check() -> Island | None:
        island = Island.objects.filter(pk=agent.host_id).first()
        return island if island and island.status == Island.Status.ONLINE else None

    return eventually(check)


def pair(agent: Agent, user: User) -> Island:
    """Pair ``agent`` with ``user`` as /pair does (the code it printed, confirmed), and
    wait for the agent to learn it."""
    code = agent.pairing_code()
    registered(agent)
    island = pairing.confirm_pairing(code=code, user=user, ip="127.0.0.1")
    agent.wait_for_line("Paired with account")
    return island
