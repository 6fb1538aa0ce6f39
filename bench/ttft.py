"""The coordinator's overhead on time to first token through streaming
``POST /chat/completions`` (see bench/README.md).

    .venv/bin/python bench/ttft.py                       # 1 and 50 concurrent requests
    .venv/bin/python bench/ttft.py --concurrency 1,50 --requests 300

Starts the whole coordinator (the Procfile's web process, a Celery worker, the NATS bridge) on the
bench database, and an Island played by nats-py (tests/compute/fake_island.py) that
answers each assignment at once, as the mock runtime does when it emits tokens as fast as
it can. Per request: overhead = (first content chunk at the client - request sent) -
(the Island's first output - the Island's receipt of the assignment).
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BASE_DIR, bench_env, start_web, stop
from relay import (
    accounts,
    bench_cargo_and_island,
    ensure_streams_exist,
    setup_django,
    start,
)

BODY = {
    "model": "llm-chat",
    "messages": [{"role": "user", "content": "How far is the next island?"}],
    "max_tokens": 8,
    "stream": True,
}


async def one(http: httpx.AsyncClient, key: str) -> tuple[str, float, float, float]:
    """One streaming request: ``(job id, seconds to the first content chunk, sent at,
    first content at)``."""
    headers = {"Authorization": f"Bearer {key}"}
    sent = time.perf_counter()
    first, job_id = None, ""
    async with http.stream("POST", "/api/v1/chat/completions", json=BODY, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            started = first is None and line.startswith("data: {") and '"content":"' in line
            if started and '"content":""' not in line:
                first = time.perf_counter()
                job_id = json.loads(line[6:])["id"]
    assert first is not None
    return job_id, first - sent, sent, first


async def watch_first_tokens(nats_url: str, seen: dict[str, float]) -> object:
    """Record when each job's first token event appears on jobs.{id}.events."""
    import nats

    nc = await nats.connect(nats_url)

    async def on_event(msg: object) -> None:
        job_id = msg.subject.split(".")[1]  # type: ignore[attr-defined]
        if job_id not in seen and b'"type":"token"' in msg.data:  # type: ignore[attr-defined]
            seen[job_id] = time.perf_counter()

    await nc.subscribe("jobs.*.events", cb=on_event)
    return nc


async def run_level(
    url: str, keys: list[str], concurrency: int, requests: int, seen: dict[str, float]
) -> list:
    results = []
    nc = await watch_first_tokens(os.environ["NATS_URL"], seen)
    limits = httpx.Limits(max_connections=concurrency + 5)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        for _ in range(3):  # warm-up: connections, caches, the placement index
            await one(http, keys[0])
        for start_at in range(0, requests, concurrency):
            batch = min(concurrency, requests - start_at)
            results += await asyncio.gather(*(one(http, keys[i % len(keys)]) for i in range(batch)))
    await nc.close()  # type: ignore[attr-defined]
    return results


def percentiles(values: list[float]) -> dict:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,50")
    parser.add_argument("--requests", type=int, default=200, help="per concurrency level")
    parser.add_argument("--accounts", type=int, default=50, help="requests use them in turn")
    parser.add_argument("--islands", type=int, default=10)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    env = bench_env(JOB_CONCURRENT_LIMIT="1000", STREAM_CONCURRENT_LIMIT="1000")
    setup_django(env)
    from tests.compute.fake_island import FakeIsland

    ensure_streams_exist()
    pairs = accounts(args.accounts, "ttft")
    islands = [bench_cargo_and_island(pairs[0][0], 1000)[1] for _ in range(args.islands)]
    from compute.models import Island

    # Islands of earlier runs look online for a while: none must get a job nobody runs.
    Island.objects.exclude(pk__in=[i.pk for i in islands]).update(status="offline")
    keys = [key for _, key in pairs]
    worker = start(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "threads",
         "--concurrency", "8", "--loglevel", "WARNING", "--without-heartbeat",
         "--without-mingle", "--without-gossip"], env,
    )  # fmt: skip
    bridge = start([sys.executable, str(BASE_DIR / "manage.py"), "sail_bridge"], env)
    web, url = start_web(env)
    fakes = [FakeIsland(str(island.pk)).start() for island in islands]
    try:
        time.sleep(2)  # the Island's first heartbeats reach the coordinator
        for level in levels:
            seen: dict[str, float] = {}
            results = asyncio.run(run_level(url, keys, level, args.requests, seen))
            timings = {job: t for fake in fakes for job, t in fake.timings.items()}
            timing = [(timings[r[0]], seen[r[0]], r) for r in results]
            ttft = [r[1] for r in results]
            island_time = [t.first_output - t.received for t, _, _ in timing]
            overhead = [t - i for t, i in zip(ttft, island_time, strict=True)]
            print(json.dumps({
                "concurrency": level, "requests": len(results),
                "overhead": percentiles(overhead), "ttft_at_client": percentiles(ttft),
                "island_time": percentiles(island_time),
                # Where the overhead goes: request -> assignment at the Island; the
                # Island's first output -> its token event on jobs.{id}.events (bridge and
                # job services); that event -> the client (this SSE relay).
                "submit_to_assignment": percentiles([t.received - r[2] for t, _, r in timing]),
                "output_to_event": percentiles([e - t.first_output for t, e, _ in timing]),
                "event_to_client": percentiles([r[3] - e for _, e, r in timing]),
            }))  # fmt: skip
    finally:
        for fake in fakes:
            fake.stop()
        for proc in (web, bridge, worker):
            stop(proc)


if __name__ == "__main__":
    main()
