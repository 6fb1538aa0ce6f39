"""Job submission: ``POST /api/v1/jobs`` to the assignment published on NATS, in jobs per
second (see bench/README.md).

    .venv/bin/python bench/submit.py                          # 32 connections, 15 s
    .venv/bin/python bench/submit.py --connections 16,32,64 --duration 20

Needs Postgres, Redis and NATS with JetStream (``DATABASE_URL``, default database
``archipelago_bench``; ``REDIS_URL``; ``NATS_URL``) and ``wrk``. It runs the Procfile's
web process (granian, 2 workers, DEBUG off, the production quotas) on the bench database
with 50 accounts and 20 online Islands of 64 slots, and drives it with ``wrk``
(keep-alive connections, each account's key in turn, a chat job per request). A 201
answer comes after the assignment was stored in the ``JOBS`` stream (the request
publishes it once its transaction commits); the bench also counts the assignments on
``host.*.jobs`` itself, as the Islands would receive them.

The system is measured in a steady state, as in production, where Islands finish jobs
about as fast as they get them: a thread of the bench marks running jobs completed
0.2 s after their assignment (one UPDATE every 0.1 s; its Postgres time is counted with
the rest) and keeps the Islands' heartbeats fresh. Without it every job would stay
running, and each submission would count thousands of running jobs of its account and
Island, a state no production coordinator is in (the quota allows 10 per account).
"""

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal

from common import (
    bench_env,
    cpu_ms_per,
    cpu_seconds,
    nats_options,
    service_cpu,
    start_web,
    stop,
    to_ms,
)
from relay import bench_cargo_and_island, ensure_streams_exist, setup_django

ACCOUNTS, ISLANDS, SLOTS, CREDITS = 50, 20, 64, Decimal(100_000)
RUN_SECONDS = 0.2  # how long a bench job "runs" before the finisher completes it
LUA = """
local keys = {%(keys)s}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"workload": "llm-chat", "input": {"prompt": "How far is the next island?"}}'
request = function()
  n = n + 1
  wrk.headers["Authorization"] = "Bearer " .. keys[(n %% #keys) + 1]
  return wrk.format()
end
local shown = 0
response = function(status, headers, body)
  if status ~= 201 and shown < 3 then
    shown = shown + 1
    io.write("unexpected answer ", status, ": ", body, "\\n")
  end
end
"""


def prepare() -> list[str]:
    """The accounts' keys; the Islands online."""
    from billing import services as ledger
    from portal import services

    stamp = int(time.time() * 1000)
    keys = []
    owner = None
    for i in range(ACCOUNTS):
        user = services.sign_up(email=f"submit-{stamp}-{i}@bench.example", password=None)
        ledger.grant(user=user, amount=CREDITS, reason="bench", idempotency_key=f"bench:{user.pk}")
        keys.append(services.create_api_key(user=user, name="submit")[1])
        owner = owner or user
    from compute.models import Island

    Island.objects.update(status="offline")  # earlier runs' Islands take no jobs
    for _ in range(ISLANDS):
        bench_cargo_and_island(owner, SLOTS)
    return keys


def settle_jobs_and_refresh_islands() -> None:
    """Untimed, between runs: no job left running, every Island just heard from."""
    from django.utils import timezone

    from compute.models import Island, Job

    Job.objects.filter(status__in=["pending", "queued", "running"]).update(status="completed")
    Island.objects.filter(status="online").update(last_heartbeat_at=timezone.now())


class Finisher:
    """Plays the Islands' side of the steady state: completes running jobs
    ``RUN_SECONDS`` after their assignment, and heartbeats the Islands every second."""

    def __init__(self, url: str) -> None:
        self.url, self.stopping = url, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            beat = 0.0
            while not self.stopping.wait(0.1):
                conn.execute(
                    "UPDATE compute_job SET status = 'completed', completed_at = now()"
                    " WHERE status = 'running' AND assigned_at < now() - %s * interval '1 second'",
                    [RUN_SECONDS],
                )
                if time.monotonic() - beat > 1:
                    beat = time.monotonic()
                    conn.execute(
                        "UPDATE compute_island SET last_heartbeat_at = now()"
                        " WHERE status = 'online'"
                    )

    def __enter__(self) -> "Finisher":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)


class Observer:
    """Counts the assignments on ``host.*.jobs`` (core NATS: what reaches the stream)."""

    def __init__(self, url: str) -> None:
        self.url, self.seen, self.ready = url, 0, threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        import nats

        self.loop, self.stopping = asyncio.get_running_loop(), asyncio.Event()
        nc = await nats.connect(self.url, **nats_options())

        async def count(_msg: object) -> None:
            self.seen += 1

        await nc.subscribe("host.*.jobs", cb=count)
        await nc.flush()
        self.ready.set()
        await self.stopping.wait()
        await nc.drain()

    def __enter__(self) -> "Observer":
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)


def wrk(url: str, script: str, connections: int, duration: float) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "--latency", "-s", script,
           f"{url}/api/v1/jobs"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    for line in re.findall(r"^unexpected answer .*$", out, re.MULTILINE):
        print(line[:300], file=sys.stderr)

    latency = dict(re.findall(r"^\s*(50|90|99)%\s+([\d.]+(?:us|ms|s|m))", out, re.MULTILINE))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "p50_ms": round(to_ms(latency["50"]), 2),
        "p90_ms": round(to_ms(latency["90"]), 2),
        "p99_ms": round(to_ms(latency["99"]), 2),
    }


def measure(url: str, script: str, connections: int, duration: float, web_pid: int) -> dict:
    settle_jobs_and_refresh_islands()
    with Finisher(os.environ["DATABASE_URL"]):
        wrk(url, script, connections, 3)  # warm-up: connections, prepared queries, the index
        time.sleep(RUN_SECONDS * 2)
        return _measured(url, script, connections, duration, web_pid)


def _measured(url: str, script: str, connections: int, duration: float, web_pid: int) -> dict:
    load = os.getloadavg()[0]
    cpu, services = cpu_seconds(web_pid), service_cpu()
    with Observer(os.environ["NATS_URL"]) as observer:
        started = time.perf_counter()
        result = wrk(url, script, connections, duration)
        elapsed = time.perf_counter() - started
        time.sleep(0.5)  # the last assignments in flight
    services_after, web_cpu = service_cpu(), cpu_seconds(web_pid) - cpu
    created = result["requests"] - result["non_2xx"]
    return {
        "connections": connections,
        **result,
        "assignments_seen": observer.seen,
        "jobs_per_s": round(created / elapsed, 1),
        "web_cpu_ms_per_job": round(web_cpu * 1000 / max(1, created), 2),
        "other_cpu_ms_per_job": cpu_ms_per(services, services_after, created),
        "load_avg_before": round(load, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", default="32")
    parser.add_argument("--duration", type=float, default=15)
    args = parser.parse_args()
    env = bench_env()
    setup_django(env)
    ensure_streams_exist()
    keys = prepare()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA % {"keys": ", ".join(f'"{k}"' for k in keys)})
    web, url = start_web(env)
    try:
        for connections in [int(c) for c in args.connections.split(",")]:
            print(json.dumps(measure(url, script.name, connections, args.duration, web.pid)))
    finally:
        stop(web)
        settle_jobs_and_refresh_islands()
        os.unlink(script.name)


if __name__ == "__main__":
    sys.exit(main())
