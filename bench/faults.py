"""Jobs through real Islands while every process and service fails in turn (see
bench/README.md, "Faults").

    .venv/bin/python bench/faults.py                   # 1,000 jobs, every fault
    .venv/bin/python bench/faults.py --jobs 200 --rate 8

The whole coordinator as the Procfile runs it (web: granian with 2 workers, a Celery
worker, beat, the bridge) on the bench database, reached through a TCP proxy that the
bench cuts; a nats-server and a redis-server of the bench's own, which it restarts; four
reference Island agents (python -m island_cli.agent, mock runtime), two with their own
keys and two field Islands (the shared user, assignments on core NATS). Clients submit
jobs at ``--rate`` per second with an Idempotency-Key each, retrying as a client does
(after ``Retry-After`` on a 503, after a second on a refused connection). Meanwhile,
every ``--gap`` seconds: kill -9 of the worker, of the bridge, NATS down for 5 s, Redis
down for 5 s, Postgres cut for 5 s, kill -9 of the web master; each process killed is
started again a second later. Then every job must end: it prints, as JSON, what each
fault cost (seconds from its end until jobs were assigned and completed again) and the
checks: jobs lost, not completed, charged twice, holds not settled once, balances that
differ from their ledger, outputs out of order, and the answers by status.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import BASE_DIR, DEFAULT_DATABASE_URL, bench_env, free_port, procfile_command, stop
from relay import accounts, setup_django

from tests.outages import CuttableProxy, NatsServer, RedisServer

DOWN = 5.0  # seconds a service stays away
TOKENS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=6.0, help="submissions per second")
    parser.add_argument("--gap", type=float, default=15.0, help="seconds between faults")
    args = parser.parse_args()
    home = BASE_DIR / ".state" / "bench-faults"
    os.environ.setdefault("SAIL_SECRET", "bench-sail-" + "x" * 40)
    os.environ.setdefault("SAIL_FIELD_PASSWORD", "bench-field")
    nats, redis = NatsServer(home / "nats").start(), RedisServer(home / "redis").start()
    real_db = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    host, port = real_db.split("@", 1)[1].split("/", 1)[0].split(":")
    proxy = CuttableProxy((host, int(port)))
    os.environ.update(NATS_URL=nats.url, REDIS_URL=redis.url, STATE_DIR=str(home))
    env = bench_env(JOB_CONCURRENT_LIMIT="100000", STREAM_CONCURRENT_LIMIT="1000")
    env["DATABASE_URL"] = real_db.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
    setup_django(env)
    from compute.seed import seed_cargos

    seed_cargos()
    coordinator = Coordinator(env, free_port())
    islands = []
    try:
        islands = start_islands(env, coordinator.url, home)
        ((user, key),) = accounts(1, "faults")
        run = Run(coordinator.url, key, real_db)
        faults = [
            ("worker killed", lambda: coordinator.kill("worker")),
            ("bridge killed", lambda: coordinator.kill("bridge")),
            ("NATS restart", lambda: restart(nats)),
            ("Redis restart", lambda: restart(redis)),
            ("Postgres cut", lambda: cut(proxy)),
            ("web master killed", lambda: coordinator.kill("web")),
        ]
        run.start(args.jobs, args.rate)
        recovery = {}
        for name, inject in faults:
            time.sleep(args.gap)
            say(f"{name} ({len(run.inputs)} jobs submitted)")
            inject()
            recovery[name] = run.resumed(since=time.time())
            say(f"{name}: {recovery[name]}")
        run.wait_submitted()
        say(f"all {len(run.inputs)} jobs submitted; waiting for their ends")
        ended = run.wait_ended(timeout=600)
        say(f"ended after {ended} s")
        from django.db import connections

        connections.close_all()  # this process's own connection died with the cut
        report = run.checks(user.pk, [i.owner_id for i in islands]) | {
            "jobs": args.jobs, "rate": args.rate, "all_ended_s": ended, "recovery_s": recovery,
        }  # fmt: skip
        print(json.dumps(report, indent=1))
    finally:
        for agent in islands:
            with contextlib.suppress(Exception):
                agent.kill()
        coordinator.stop()
        for server in (nats, redis):
            server.stop()
        proxy.stop()


def say(message: str) -> None:
    print(f"[faults] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# --- the coordinator ---------------------------------------------------------------------
class Coordinator:
    """The Procfile's processes; the web one on a fixed port, so that clients find it again."""

    def __init__(self, env: dict[str, str], port: int):
        self.env = env | {"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2"}
        self.url = f"http://127.0.0.1:{port}"
        self.procs = {name: self._start(name) for name in ("web", "worker", "beat", "bridge")}
        deadline = time.monotonic() + 60
        while not self._up():
            assert time.monotonic() < deadline, "the web process did not start"
            time.sleep(0.2)

    def _start(self, name: str) -> subprocess.Popen:
        return subprocess.Popen(
            ["sh", "-c", "exec env " + procfile_command(name)], env=self.env, cwd=BASE_DIR,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self, name: str) -> None:
        """kill -9 of the process (its children are left to what the process arranged:
        the web's workers die with it, a Celery worker's pool notices), then a new one."""
        proc = self.procs[name]
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.wait(10)
        _, alive = psutil.wait_procs(children, timeout=5)
        for orphan in alive:  # counted against the process, then cleared
            print(f"orphan of {name}: {orphan.pid}", file=sys.stderr)
            orphan.kill()
        time.sleep(1)
        self.procs[name] = self._start(name)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop(proc)


def restart(server: NatsServer | RedisServer) -> None:
    server.stop()
    time.sleep(DOWN)
    server.start()


def cut(proxy: CuttableProxy) -> None:
    proxy.cut()
    time.sleep(DOWN)
    proxy.restore()


def start_islands(env: dict[str, str], api_url: str, home: Path) -> list:
    """Four reference agents, paired with one owner: two with keys, two field Islands."""
    from portal import services
    from tests.e2e.conftest import AGENT_DEFAULTS, Agent, online, pair

    owner = services.sign_up(email=f"owner-{uuid.uuid4().hex[:8]}@bench.example", password=None)
    field = env["NATS_URL"].replace("://", f"://island:{env['SAIL_FIELD_PASSWORD']}@", 1)
    agents = []
    for n in range(4):
        name = f"faults-{n}-{uuid.uuid4().hex[:6]}"
        config = {
            "host": {"name": name, "region": "eu-west"},
            "coordinator": {"nats_url": env["NATS_URL"] if n % 2 else field, "api_url": api_url},
            "pricing": {"default_price": "0.005"},
            "agent": {**AGENT_DEFAULTS, "heartbeat_interval": 2, "lease_interval": 10,
                      "lease_extend_seconds": 60, "state_dir": str(home / name / ".island"),
                      "max_concurrent_jobs": 4, "mock_tokens_per_second": 50},
        }  # fmt: skip
        agent = Agent(home / name, config).start()
        island = pair(agent, owner)
        online(agent)
        agent.owner_id = island.owner_id
        agents.append(agent)
    return agents


# --- the clients and the checks --------------------------------------------------------------
class Run:
    def __init__(self, url: str, key: str, db_url: str):
        self.url, self.key, self.db_url = url, key, db_url
        self.inputs: dict[str, dict] = {}
        self.answers: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def start(self, jobs: int, rate: float) -> None:
        self.thread = threading.Thread(target=self._submit_all, args=(jobs, rate), daemon=True)
        self.thread.start()

    def _submit_all(self, jobs: int, rate: float) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=30) as client:
            started = time.monotonic()
            for n in range(jobs):
                time.sleep(max(0.0, started + n / rate - time.monotonic()))
                self._submit(client, n)

    def _submit(self, client: httpx.Client, n: int) -> None:
        job_input = {"messages": [{"role": "user", "content": f"job {n}"}], "max_tokens": TOKENS}
        body = {"workload": "llm-chat", "input": job_input}
        idempotency = {"Idempotency-Key": f"faults-{uuid.uuid4()}"}
        while True:
            try:
                answer = client.post("/jobs", json=body, headers=idempotency)
            except httpx.TransportError:
                self._count("refused")
                time.sleep(1)
                continue
            self._count(str(answer.status_code))
            if answer.status_code == 201:
                self.inputs[answer.json()["data"]["id"]] = job_input
                return
            if answer.status_code not in (429, 503):  # a client would not try again
                say(f"job {n}: {answer.status_code} {answer.text[:300]}")
                return
            time.sleep(float(answer.headers.get("Retry-After", 1)))

    def _count(self, what: str) -> None:
        with self.lock:
            self.answers[what] += 1

    def _query(self, sql: str, params: list) -> list:
        import psycopg

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def resumed(self, *, since: float) -> dict[str, float | None]:
        """Seconds from ``since`` until a job was assigned, and one completed, after it."""
        found: dict[str, float | None] = {"assigned": None, "completed": None}
        deadline = time.time() + 60
        while None in found.values() and time.time() < deadline:
            for column in [c for c, v in found.items() if v is None]:
                field = "assigned_at" if column == "assigned" else "completed_at"
                rows = self._query(
                    f"SELECT min({field}) FROM compute_job WHERE {field} > to_timestamp(%s)",
                    [since],
                )
                if rows[0][0] is not None:
                    found[column] = round(rows[0][0].timestamp() - since, 1)
            time.sleep(0.2)
        return found

    def wait_submitted(self) -> None:
        assert self.thread is not None
        self.thread.join()

    def wait_ended(self, timeout: float) -> float:
        started = time.monotonic()
        ids = list(self.inputs)
        while time.monotonic() - started < timeout:
            rows = self._query(
                "SELECT count(*) FROM compute_job WHERE id = ANY(%s) AND status NOT IN "
                "('completed', 'failed', 'cancelled', 'timeout')", [[uuid.UUID(i) for i in ids]]
            )  # fmt: skip
            if rows[0][0] == 0:
                break
            time.sleep(1)
        return round(time.monotonic() - started, 1)

    def checks(self, user_id: object, owner_ids: list) -> dict:
        from island_cli.agent.runtimes.mock import reply_tokens

        from billing.audit import balance_problems, job_problems
        from compute.models import Job

        jobs = {str(j.pk): j for j in Job.objects.filter(pk__in=list(self.inputs))}
        out_of_order = []
        for job_id, job in jobs.items():
            rest = job.output
            for token in reply_tokens(self.inputs[job_id])[:TOKENS]:
                rest = rest[len(token) :] if rest.startswith(token) else rest
            if rest or not job.output:
                out_of_order.append(job_id)
        whole = sum(
            job.output == "".join(reply_tokens(self.inputs[i])[:TOKENS]) for i, job in jobs.items()
        )
        return {
            "submitted": len(self.inputs),
            "lost": len(self.inputs) - len(jobs),
            "statuses": dict(Counter(j.status for j in jobs.values())),
            "outputs_whole": whole,
            "outputs_out_of_order": len(out_of_order),
            "jobs_money_problems": job_problems(list(jobs)),
            "balance_problems": balance_problems([user_id, *set(owner_ids)]),
            "answers": dict(self.answers),
        }


if __name__ == "__main__":
    main()
