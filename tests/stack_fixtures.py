"""The whole coordinator as separate processes on the test database, for end-to-end
tests: the ASGI web server (from conftest's ``live``), a Celery worker, Celery beat is
left out (tests call the periodic tasks directly) and the NATS bridge."""

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import BASE_DIR, Server, server_env


@dataclass
class Stack:
    server: Server
    worker: subprocess.Popen
    bridge: subprocess.Popen

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, key: str | None = None) -> httpx.Client:
        return self.server.client(key)


def start_workers(server: Server, env: dict[str, str] | None = None) -> Stack:
    """A Celery worker and the bridge next to ``server``, ready to take messages."""

    def start(cmd: list[str]) -> subprocess.Popen:
        return subprocess.Popen(cmd, env=server_env(env), cwd=BASE_DIR)

    worker = start(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads",
         "--concurrency", "4", "--loglevel", "WARNING", "--without-heartbeat",
         "--without-mingle", "--without-gossip"]
    )  # fmt: skip
    bridge = start([sys.executable, "manage.py", "sail_bridge"])
    _wait_until_ready(worker, bridge)
    return Stack(server=server, worker=worker, bridge=bridge)


def stop_workers(stack: Stack) -> None:
    stop_process(stack.bridge)
    stop_process(stack.worker)


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 15 s: a process slow to stop on a loaded machine must
    not outlive its test and take the next tests' tasks."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_until_ready(worker: subprocess.Popen, bridge: subprocess.Popen) -> None:
    """Tests start once the bridge's durable consumers exist and the worker answers a
    ping: an Island message published earlier would find nobody to take it."""
    from config.celery import app
    from sail import subjects
    from sail.client import sail
    from sail.streams import CONSUMERS

    async def consumers_exist(nc) -> bool:
        js = nc.jetstream()
        try:
            for consumer in CONSUMERS.values():
                await js.consumer_info(consumer.stream, consumer.durable)
        except Exception:
            return False
        return True

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the Celery worker died"
        assert bridge.poll() is None, "the bridge died"
        if sail.call(consumers_exist) and app.control.ping(timeout=0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the bridge or the worker did not get ready ({subjects.JOBS_STREAM})")


@pytest.fixture(scope="module")
def _stack_processes(_server_session) -> Iterator[Stack]:
    # Module scope: a bridge left running would compete for the durable consumers with
    # the bridges that other test modules start themselves.
    stack = start_workers(_server_session)
    yield stack
    stop_workers(stack)


@pytest.fixture
def stack(_stack_processes, transactional_db) -> Stack:
    """Web, worker and bridge running against the (transactional) test database."""
    for proc in (_stack_processes.worker, _stack_processes.bridge):
        assert proc.poll() is None, "a stack process died"
    return _stack_processes
