"""The whole coordinator as separate processes on the test database, for end-to-end
tests: the ASGI web server (from conftest's ``live``), a Celery worker, Celery beat is
left out (tests call the periodic tasks directly) and the NATS bridge."""

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

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


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=server_env(), cwd=BASE_DIR)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def _stack_processes(_server_session) -> Iterator[Stack]:
    # Module scope: a bridge left running would compete for the durable consumers with
    # the bridges that other test modules start themselves.
    worker = _start(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "threads",
         "--concurrency", "4", "--loglevel", "WARNING", "--without-heartbeat",
         "--without-mingle", "--without-gossip"]
    )  # fmt: skip
    bridge = _start([sys.executable, "manage.py", "sail_bridge"])
    yield Stack(server=_server_session, worker=worker, bridge=bridge)
    _stop(bridge)
    _stop(worker)


@pytest.fixture
def stack(_stack_processes, transactional_db) -> Stack:
    """Web, worker and bridge running against the (transactional) test database."""
    for proc in (_stack_processes.worker, _stack_processes.bridge):
        assert proc.poll() is None, "a stack process died"
    return _stack_processes
