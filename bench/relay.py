"""Token relay over SSE: tokens per second delivered to concurrent ``GET /jobs/:id/stream``
clients, none lost, and the web process's memory growth (see bench/README.md).

    .venv/bin/python bench/relay.py                      # 100 streams x 2,000 tokens
    .venv/bin/python bench/relay.py --streams 100 --tokens 5000

Needs Postgres, Redis and NATS with JetStream: ``DATABASE_URL`` (default: database
``archipelago_bench``, created and migrated if missing), ``REDIS_URL``, ``NATS_URL``. The
Procfile's web process (granian, 2 workers) runs the production settings. Once every
client is attached, a process of its own publishes each job's tokens on
``jobs.{id}.events`` exactly as the coordinator does (core publishes into the
``JOB_UPDATES`` stream with a ``Nats-Msg-Id``, then ``done``); the clients count the
``token`` events they receive.
"""

import argparse
import asyncio
import json
import multiprocessing
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import orjson
from common import (
    BASE_DIR,
    bench_env,
    cpu_seconds,
    nats_options,
    rss_mb,
    setup_django,
    start_web,
    stop,
)

sys.path.insert(0, str(BASE_DIR))
PER_ACCOUNT = 5  # streams per account: the production quota


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
    """The streams as the bridge makes them on its start (sail.streams), without the
    Islands' consumers that earlier runs left on ``JOBS`` (the server matches every
    assignment against each of them: hundreds of them slow every publish down)."""
    from sail.client import sail
    from sail.streams import JOBS, ensure_all

    async def go(nc: object) -> None:
        js = nc.jetstream()  # type: ignore[attr-defined]
        await ensure_all(js)
        for consumer in await js.consumers_info(JOBS.name):
            if consumer.name.startswith("host-"):
                await js.delete_consumer(JOBS.name, consumer.name)

    sail.call(go, timeout=60)


def bench_cargo_and_island(owner: object, slots: int) -> tuple:
    """The ``llm-chat`` Cargo (seeded) and an online Island of ``owner`` with ``slots``."""
    import uuid

    from django.utils import timezone

    from compute.models import Cargo, Island
    from compute.seed import seed_cargos
    from sail import keys

    seed_cargos()
    island = Island.objects.create(
        id=uuid.uuid4(), owner=owner, name=f"bench-{int(time.time())}", status="online",
        nkey=keys.public_key(keys.new_seed()),  # its own key, as the reference agent's
        capabilities={"cpu_cores": 8, "ram_mb": 16384}, runtimes=["container", "llmcpp"],
        max_concurrent_jobs=slots, last_heartbeat_at=timezone.now(), paired_at=timezone.now(),
    )  # fmt: skip
    return Cargo.objects.get(slug="llm-chat"), island


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=BASE_DIR)


# Clients attach a few at a time: a burst of 100 requests in the same millisecond would
# queue behind each other's database lookups and time out the slowest.
OPENING = 10
DONE = b"event: done\n"
TOKEN = b"event: token\n"


class Attached:
    """Counts the clients whose stream is open."""

    def __init__(self, expected: int) -> None:
        self.left, self.all = expected, asyncio.Event()

    def one(self) -> None:
        self.left -= 1
        if not self.left:
            self.all.set()


async def client(
    url: str, job_id: str, key: str, opening: asyncio.Semaphore, attached: Attached
) -> tuple[int, float]:
    """Open the stream and count its token events until ``done``: (tokens, end time).
    A raw HTTP/1.1 reader that only counts, so that the clients cost the two shared cores
    as little as possible (they are not what is measured)."""
    host, port = url.removeprefix("http://").split(":")
    async with opening:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /api/v1/jobs/{job_id}/stream HTTP/1.1\r\nHost: {host}\r\n"
                     f"Authorization: Bearer {key}\r\n\r\n".encode())  # fmt: skip
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    attached.one()
    tokens, tail = 0, b""
    try:
        while chunk := await reader.read(65536):
            data = tail + chunk
            tokens += data.count(TOKEN)
            if DONE in data:
                return tokens, time.perf_counter()
            tail = data[-len(TOKEN) + 1 :]
            tokens -= tail.count(TOKEN)  # counted again with the next read
    finally:
        writer.close()
    return tokens, time.perf_counter()


def publish_events(job_ids: list[str], tokens: int, nats_url: str) -> float:
    """Every job's tokens on ``jobs.{id}.events``, interleaved, then ``done``, exactly as
    the coordinator publishes them (core publishes into ``JOB_UPDATES`` with a
    ``Nats-Msg-Id``). Runs in a process of its own; returns the seconds it took."""
    import nats

    async def go() -> float:
        nc = await nats.connect(nats_url, pending_size=64 * 2**20, **nats_options())
        started = time.perf_counter()
        for seq in range(1, tokens + 1):
            for job_id in job_ids:
                event = {"type": "token", "job_id": job_id, "content": f" w{seq}", "seq": seq}
                headers = {"Nats-Msg-Id": f"{job_id}:1:t:{seq}"}
                await nc.publish(f"jobs.{job_id}.events", orjson.dumps(event), headers=headers)
            if seq % 20 == 0:
                await nc.flush()
        for job_id in job_ids:
            done = {"type": "done", "job_id": job_id, "usage": {"completion_tokens": tokens}}
            headers = {"Nats-Msg-Id": f"{job_id}:done"}
            await nc.publish(f"jobs.{job_id}.events", orjson.dumps(done), headers=headers)
        await nc.flush()
        await nc.close()
        return time.perf_counter() - started

    return asyncio.run(go())


async def measure(url: str, jobs: list[tuple[str, str]], tokens: int, nats_url: str) -> dict:
    opening, attached = asyncio.Semaphore(OPENING), Attached(len(jobs))
    readers = [asyncio.create_task(client(url, j, k, opening, attached)) for j, k in jobs]
    await asyncio.wait_for(attached.all.wait(), 60)
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        started = time.perf_counter()
        publishing = await loop.run_in_executor(
            pool, publish_events, [j for j, _ in jobs], tokens, nats_url
        )
        results = await asyncio.wait_for(asyncio.gather(*readers), 300)
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
        before, cpu = rss_mb(web.pid), cpu_seconds(web.pid)
        result = asyncio.run(measure(url, jobs, args.tokens, env["NATS_URL"]))
        after, cpu = rss_mb(web.pid), cpu_seconds(web.pid) - cpu
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
        "web_cpu_us_per_token": round(cpu * 1e6 / max(1, result["received"]), 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
