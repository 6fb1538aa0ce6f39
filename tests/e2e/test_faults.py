"""Fault injection at small scale: a few dozen jobs through real Islands while the Celery
worker is killed, the bridge is killed and NATS restarts. Every job completes with its
whole output, none is charged twice, each hold is settled once, and every balance
equals its ledger. (The full run, 1,000 jobs and every fault: bench/faults.py.)

This module's coordinator (web, worker, bridge and Celery beat, which runs the dispatch
passes and the sweeps as in production) and its Islands use a nats-server of its own,
which it restarts; the suite's is never touched."""

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from island_cli.agent.runtimes.mock import reply_tokens

from billing.audit import balance_problems, job_problems
from compute.models import Job
from portal import services
from sail.client import sail, system
from tests.conftest import BASE_DIR, server_env, start_server, stop_server
from tests.e2e.conftest import _env, eventually, online, pair
from tests.e2e.test_jobs import chat_input, submit
from tests.outages import NatsServer
from tests.stack_fixtures import Stack, start_workers, stop_process, stop_workers

# Heartbeats stay fresh through a NATS restart of a few seconds (as in production, where
# an Island is offline after 30 s); an unacknowledged assignment is offered again after a
# second, long before its lease (half of production's) would take it back.
FAULT_SETTINGS = {
    "HEARTBEAT_OFFLINE_SECONDS": "15",
    "DISCONNECT_PENALTY_AFTER_SECONDS": "60",
    "JOB_LEASE_SECONDS": "30",
    "JOB_ACK_TIMEOUT_SECONDS": "1",
    "JOB_CONCURRENT_LIMIT": "100",
}
JOBS_PER_WAVE = 12
# Every job of a wave final within this long after its fault: a killed worker loses the
# tasks it held (an Island's `succeeded`), so its jobs run again once their lease ends.
RECOVERY = 90.0
NATS_DOWN = 3.0
TOKENS = 40  # 2 s a job: each fault finds jobs running and jobs waiting
NATS_RESUMED = 10.0


def use_nats(url: str) -> None:
    """Point this process's Sail connections at ``url`` (the pairing of Islands publishes
    on them, and the stack's readiness check reads the bridge's consumers through them):
    each is closed, and the next call connects anew."""
    django_settings.NATS_URL = url
    for client in (sail, system):
        if client._nc is not None:
            client.call(lambda nc: nc.close())
        client._nc = None


class Processes:
    """The coordinator's processes of this module, each of which a test may kill."""

    def __init__(self, env: dict[str, str], home: Path):
        self.env = env
        self.home = home
        self.server = start_server(env=env)
        self.stack: Stack = start_workers(self.server, env)
        self.beat = self._start("beat", "-s", str(home / "beat-schedule"))

    def _start(self, kind: str, *args: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "celery", "-A", "config", kind, "--loglevel", "WARNING", *args]
        return subprocess.Popen(cmd, env=server_env(self.env), cwd=BASE_DIR)

    def kill_worker(self) -> None:
        kill(self.stack.worker)
        self.stack.worker = self._start(
            "worker", "--pool", "threads", "--concurrency", "4", "--without-heartbeat",
            "--without-mingle", "--without-gossip",
        )  # fmt: skip

    def kill_bridge(self) -> None:
        kill(self.stack.bridge)
        cmd = [sys.executable, "manage.py", "sail_bridge"]
        self.stack.bridge = subprocess.Popen(cmd, env=server_env(self.env), cwd=BASE_DIR)

    def stop(self) -> None:
        try:
            stop_process(self.beat)
            stop_workers(self.stack)
        finally:
            stop_server(self.server)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory) -> Iterator[NatsServer]:
    """This module's own nats-server, with the Sail's configuration."""
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    suite_url = django_settings.NATS_URL
    use_nats(server.url)
    yield server
    use_nats(suite_url)
    server.stop()


@pytest.fixture(scope="module")
def processes(
    django_db_setup, django_db_blocker, nats_server, tmp_path_factory
) -> Iterator[Processes]:
    env = _env() | FAULT_SETTINGS | {"NATS_URL": nats_server.url}
    started = Processes(env, tmp_path_factory.mktemp("beat"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def _e2e_processes(processes) -> Stack:
    """The e2e fixtures (``e2e``, ``agent``) on this module's coordinator."""
    return processes.stack


def test_jobs_survive_a_killed_worker_a_killed_bridge_and_a_nats_restart(
    processes, nats_server, e2e, agent, account, field_url, settings
):
    """GIVEN two Islands, one with its key (a JetStream consumer) and one field Island
    (the shared user, its assignments on core NATS, lost while NATS is down)
    WHEN waves of jobs meet each fault in turn
    THEN every job completes, once, and the money adds up."""
    for name, value in FAULT_SETTINGS.items():
        setattr(settings, name, int(value))
    owner = services.sign_up(email="owner@example.com", password=None)
    options = {"max_concurrent_jobs": 3, "mock_tokens_per_second": 20}
    islands = [
        agent("keyed", **options),
        agent("field", coordinator={"nats_url": field_url}, **options),
    ]
    for island in islands:
        pair(island, owner)
        online(island)
    user, key = account
    inputs: dict[str, dict] = {}

    def wave() -> None:
        for _ in range(JOBS_PER_WAVE):
            job_input = chat_input(f"job {len(inputs)}", max_tokens=TOKENS)
            inputs[submit(e2e, key, job_input)] = job_input

    def restart_nats() -> None:
        nats_server.stop()
        time.sleep(NATS_DOWN)
        nats_server.start()

    def unfinished() -> list:
        return list(Job.objects.filter(pk__in=inputs).exclude(status__in=Job.FINAL))

    took = {}
    for fault, inject in (("worker", processes.kill_worker), ("bridge", processes.kill_bridge),
                          ("nats", restart_nats)):  # fmt: skip
        wave()
        time.sleep(0.5)  # jobs running, others queued
        inject()
        back = time.monotonic()
        eventually(lambda: not unfinished(), timeout=RECOVERY, interval=0.2)
        took[fault] = time.monotonic() - back
    # The assignments that NATS lost are offered again at once, not after their lease.
    assert took["nats"] < NATS_RESUMED, took
    jobs = {str(j.pk): j for j in Job.objects.filter(pk__in=inputs)}
    assert len(jobs) == 3 * JOBS_PER_WAVE
    assert {j.status for j in jobs.values()} == {"completed"}, [
        (j.pk, j.status, j.error) for j in jobs.values() if j.status != "completed"
    ]
    # Output: in order and never twice; a chunk NATS lost in flight (core NATS, at most
    # once) stays missing (README, "When a backing service is away").
    wrong = [(i, jobs[i].output) for i in inputs if not in_order(jobs[i].output, inputs[i])]
    assert wrong == []
    assert job_problems(inputs) == []
    assert balance_problems([user.pk, owner.pk]) == []


def in_order(output: str, job_input: dict) -> bool:
    """Whether ``output`` is the mock reply's tokens in their order, each at most once,
    and not empty."""
    tokens = reply_tokens(job_input)[: job_input["max_tokens"]]
    rest = output
    for token in tokens:
        if rest.startswith(token):
            rest = rest[len(token) :]
    return bool(output) and rest == ""
