"""Token relay over SSE: tokens per second delivered to concurrent ``GET /jobs/:id/stream``
clients, none lost, and the web process's memory growth (see bench/README.md).

    .venv/bin/python bench/relay.py                      # 100 streams x 2,000 tokens
    .venv/bin/python bench/relay.py --streams 100 --tokens 5000

Needs Postgres, Redis and NATS with JetStream: ``DATABASE_URL`` (default: database
``archipelago_bench``, created and migrated if missing), ``REDIS_URL``, ``NATS_URL``. One
uvicorn worker runs the production settings. The bench publishes each job's tokens on
``jobs.{id}.events`` exactly as the coordinator does (core publishes into the
``JOB_UPDATES`` stream with a ``Nats-Msg-Id``, then ``done``), after every client is
attached, and counts the ``token`` events each client receives.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

import httpx
import orjson
from common import BASE_DIR, create_database, rss_mb, start_web, stop

sys.path.insert(0, str(BASE_DIR))
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/archipelago_bench"
PER_ACCOUNT = 5  # streams per account: the production quota


def bench_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    env.setdefault("NATS_URL", "nats://127.0.0.1:4222")
    env.setdefault("SECRET_KEY", "bench-" + "x" * 50)
    env.update(
        DEBUG="false",
        API_RATE_LIMIT="1000000000",
        API_ANON_RATE_LIMIT="1000000000",
        LOG_LEVEL="WARNING",
        **overrides,
    )
    env["PYTHONPATH"] = str(BASE_DIR)
    return env


def setup_django(env: dict[str, str]) -> None:
    """Create and migrate the bench database; Django is then usable in this process."""
    create_database(env["DATABASE_URL"])
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def accounts(count: int, tag: str) -> list[tuple[object, str]]:
    """``count`` fresh accounts and a key of each."""
    from portal import services

    stamp = int(time.time() * 1000)
    users = [
        services.sign_up(email=f"{tag}-{stamp}-{i}@bench.example", password=None)
        for i in range(count)
    ]
    return [(u, services.create_api_key(user=u, name=tag)[1]) for u in users]


def ensure_streams_exist() -> None:
    from compute.services.publish import ensure_streams

    ensure_streams(force=True)


def bench_cargo_and_island(owner: object, slots: int) -> tuple:
    """The ``llm-chat`` Cargo (seeded) and an online Island of ``owner`` with ``slots``."""
    import uuid

    from django.utils import timezone

    from compute.models import Cargo, Island
    from compute.seed import seed_cargos

    seed_cargos()
    island = Island.objects.create(
        id=uuid.uuid4(), owner=owner, name=f"bench-{int(time.time())}", status="online",
        capabilities={"cpu_cores": 8, "ram_mb": 16384}, runtimes=["container", "llmcpp"],
        max_concurrent_jobs=slots, last_heartbeat_at=timezone.now(), paired_at=timezone.now(),
    )  # fmt: skip
    return Cargo.objects.get(slug="llm-chat"), island


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=BASE_DIR)


# Clients attach a few at a time: a burst of 100 requests in the same millisecond would
# open 100 database connections at once (one per request thread while it authenticates).
OPENING = 10


async def client(http: httpx.AsyncClient, job_id: str, key: str, attached: asyncio.Event, n: list):
    """Open the stream, count its token events until done; returns (tokens, end time)."""
    headers = {"Authorization": f"Bearer {key}"}
    tokens, buffer = 0, b""
    await n[2].acquire()
    async with http.stream("GET", f"/api/v1/jobs/{job_id}/stream", headers=headers) as response:
        n[2].release()
        assert response.status_code == 200, await response.aread()
        n[0] += 1
        if n[0] == n[1]:
            attached.set()
        async for chunk in response.aiter_bytes():
            *events, buffer = (buffer + chunk).split(b"\n\n")
            for event in events:
                if event.startswith(b"event: token\n"):
                    tokens += 1
                elif event.startswith(b"event: done\n"):
                    return tokens, time.perf_counter()
    return tokens, time.perf_counter()


async def publish(job_ids: list[str], tokens: int, nats_url: str) -> tuple[float, float]:
    """Every job's tokens, interleaved as concurrent Islands would send them, then done."""
    import nats

    nc = await nats.connect(nats_url)
    started = time.perf_counter()
    for seq in range(1, tokens + 1):
        for job_id in job_ids:
            event = {"type": "token", "job_id": job_id, "content": f" w{seq}", "seq": seq}
            headers = {"Nats-Msg-Id": f"{job_id}:1:t:{seq}"}
            await nc.publish(f"jobs.{job_id}.events", orjson.dumps(event), headers=headers)
        if seq % 50 == 0:
            await nc.flush()
    for job_id in job_ids:
        done = {"type": "done", "job_id": job_id, "usage": {"completion_tokens": tokens}}
        await nc.publish(
            f"jobs.{job_id}.events", orjson.dumps(done), headers={"Nats-Msg-Id": f"{job_id}:done"}
        )
    await nc.flush()
    await nc.close()
    return started, time.perf_counter() - started


async def measure(url: str, jobs: list[tuple[str, str]], tokens: int, nats_url: str) -> dict:
    attached, count = asyncio.Event(), [0, len(jobs), asyncio.Semaphore(OPENING)]
    limits = httpx.Limits(max_connections=len(jobs) + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        readers = [asyncio.create_task(client(http, j, k, attached, count)) for j, k in jobs]
        await asyncio.wait_for(attached.wait(), 60)
        started, publishing = await publish([j for j, _ in jobs], tokens, nats_url)
        results = await asyncio.gather(*readers)
    received = sum(r[0] for r in results)
    elapsed = max(r[1] for r in results) - started
    return {
        "received": received,
        "expected": tokens * len(jobs),
        "seconds": round(elapsed, 3),
        "publish_seconds": round(publishing, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=2000, help="tokens per stream")
    args = parser.parse_args()
    env = bench_env()
    setup_django(env)
    from compute.models import Job

    ensure_streams_exist()
    pairs = accounts(-(-args.streams // PER_ACCOUNT), "relay")
    cargo, island = bench_cargo_and_island(pairs[0][0], args.streams)
    jobs = []
    for user, key in pairs:
        for _ in range(PER_ACCOUNT):
            if len(jobs) < args.streams:
                job = Job.objects.create(user=user, cargo=cargo, island=island, status="running")
                jobs.append((str(job.pk), key))
    web, url = start_web(env)
    try:
        time.sleep(1)
        before = rss_mb(web.pid)
        result = asyncio.run(measure(url, jobs, args.tokens, env["NATS_URL"]))
        after = rss_mb(web.pid)
    finally:
        stop(web)
    result |= {
        "streams": args.streams,
        "tokens_per_stream": args.tokens,
        "lost": result["expected"] - result["received"],
        "tokens_per_second": round(result["received"] / result["seconds"]),
        "web_rss_mb_before": round(before, 1),
        "web_rss_mb_after": round(after, 1),
        "web_rss_growth_mb": round(after - before, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
