"""The coordinator's overhead on time to first token through streaming
``POST /chat/completions`` (see bench/README.md).

    .venv/bin/python bench/ttft.py                       # 1 and 50 concurrent requests
    .venv/bin/python bench/ttft.py --concurrency 1,50 --requests 300
    .venv/bin/python bench/ttft.py --key-caps            # keys with caps (never reached)

Starts the whole coordinator (the Procfile's web process, a Celery worker, the NATS
bridge) on the bench database, and Islands played by nats-py in a process of their own
(tests/compute/fake_island.py) that answer each assignment at once, as the mock runtime
does when it emits tokens as fast as it can. Clients are raw HTTP/1.1 readers on
keep-alive connections (one per concurrent request), in this process. Requests go out in
waves of ``concurrency`` sent together; ``--pause`` waits between waves.

Per request: overhead = (first content chunk at the client - request sent) - (the
Island's first output - the Island's receipt of the assignment). It splits into request
-> assignment at the Island, and the Island's first output -> the client. Every clock is
``CLOCK_MONOTONIC`` of the same machine.
"""

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BASE_DIR, bench_env, cpu_ms_per, cpu_seconds, service_cpu, start_web, stop
from relay import accounts, bench_cargo_and_island, ensure_streams_exist, setup_django, start

BODY = orjson.dumps(
    {
        "model": "llm-chat",
        "messages": [{"role": "user", "content": "How far is the next island?"}],
        "max_tokens": 8,
        "stream": True,
    }
)


def fleet(host_ids: list[str], conn: object) -> None:
    """The Islands' process: play them until told to stop, then send their timings."""
    from tests.compute.fake_island import FakeIsland

    fakes = [FakeIsland(host_id).start() for host_id in host_ids]
    conn.send("ready")  # type: ignore[attr-defined]
    conn.recv()  # type: ignore[attr-defined]
    timings = {}
    for fake in fakes:
        timings |= {job: (t.received, t.first_output) for job, t in fake.timings.items()}
        fake.stop()
    conn.send(timings)  # type: ignore[attr-defined]


class Client:
    """One keep-alive HTTP/1.1 connection that streams chat completions."""

    def __init__(self, url: str) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)

    async def open(self) -> "Client":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def chat(self, key: str) -> tuple[str, float, float]:
        """``(job id, sent at, first content at)``."""
        head = (
            f"POST /api/v1/chat/completions HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode()
        sent = time.perf_counter()
        self.writer.write(head + BODY)
        status = await self.reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 200"), status
        first, job_id, buffer = 0.0, "", b""
        while True:  # chunked transfer: size line, data, CRLF
            size = int((await self.reader.readline()).strip(), 16)
            data = await self.reader.readexactly(size + 2)
            if size == 0:
                return job_id, sent, first
            buffer += data[:-2]
            while b"\n\n" in buffer:
                line, buffer = buffer.split(b"\n\n", 1)
                if not first and line.startswith(b"data: {") and b'"content":"' in line:
                    chunk = orjson.loads(line[6:])
                    if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        first, job_id = time.perf_counter(), chunk["id"]


async def run_level(url: str, keys: list[str], concurrency: int, requests: int,
                    pause: float) -> list:  # fmt: skip
    clients = [await Client(url).open() for _ in range(concurrency)]
    for start_at in range(0, 2 * len(keys), concurrency):  # warm-up: connections, the key
        # caches of the processes (each key on every connection), the placement index
        await asyncio.gather(
            *(c.chat(keys[(start_at + i) % len(keys)]) for i, c in enumerate(clients))
        )
    results = []
    for start_at in range(0, requests, concurrency):
        wave = clients[: min(concurrency, requests - start_at)]
        results += await asyncio.gather(
            *(c.chat(keys[(start_at + i) % len(keys)]) for i, c in enumerate(wave))
        )
        await asyncio.sleep(pause)
    for client in clients:
        client.writer.close()
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
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between waves")
    parser.add_argument(
        "--key-caps", action="store_true",
        help="give every key caps it never reaches (the submission then reads its usage)",
    )  # fmt: skip
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    env = bench_env(JOB_CONCURRENT_LIMIT="1000", STREAM_CONCURRENT_LIMIT="1000")
    setup_django(env)
    ensure_streams_exist()
    pairs = accounts(args.accounts, "ttft")
    if args.key_caps:
        from portal.models import ApiKey

        ApiKey.objects.filter(user__in=[user for user, _ in pairs]).update(
            spend_cap_day=10**9, spend_cap_month=10**9, spend_cap_total=10**9, jobs_per_minute=10**6
        )
    islands = [bench_cargo_and_island(pairs[0][0], 1000)[1] for _ in range(args.islands)]
    from compute.models import Island

    # Islands of earlier runs look online for a while: none must get a job nobody runs.
    Island.objects.exclude(pk__in=[i.pk for i in islands]).update(status="offline")
    keys = [key for _, key in pairs]
    from django.db import connections

    connections.close_all()  # the Islands' process is forked: it must not share them
    here, there = multiprocessing.Pipe()
    islands_process = multiprocessing.get_context("fork").Process(
        target=fleet, args=([str(i.pk) for i in islands], there), daemon=True
    )
    islands_process.start()
    assert here.recv() == "ready"
    worker = start(  # at the Procfile's priority (WORKER_NICE)
        ["nice", "-n", "10", sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads",
         "--concurrency", "8", "--loglevel", "WARNING", "--without-heartbeat",
         "--without-mingle", "--without-gossip"], env,
    )  # fmt: skip
    bridge = start([sys.executable, str(BASE_DIR / "manage.py"), "sail_bridge"], env)
    web, url = start_web(env)
    try:
        time.sleep(2)  # the Islands' first heartbeats reach the coordinator
        runs, processes = [], {"web": web, "worker": worker, "bridge": bridge,
                               "islands": islands_process}  # fmt: skip
        for level in levels:
            before = service_cpu() | {n: cpu_seconds(p.pid) for n, p in processes.items()}
            results = asyncio.run(run_level(url, keys, level, args.requests, args.pause))
            after = service_cpu() | {n: cpu_seconds(p.pid) for n, p in processes.items()}
            # The warm-up's requests count too: a level sends that many more.
            sent = len(results) + level * -(-2 * len(keys) // level)
            runs.append((level, results, cpu_ms_per(before, after, sent)))
        here.send("stop")
        timings = here.recv()
        for level, results, cpu in runs:
            at_island = [timings[job] for job, _, _ in results]
            ttft = [first - sent for _, sent, first in results]
            island_time = [output - received for received, output in at_island]
            print(json.dumps({
                "concurrency": level, "requests": len(results), "pause_s": args.pause,
                "overhead": percentiles([t - i for t, i in zip(ttft, island_time, strict=True)]),
                "ttft_at_client": percentiles(ttft),
                "island_time": percentiles(island_time),
                "request_to_assignment": percentiles(
                    [received - sent for (_, sent, _), (received, _) in zip(results, at_island, strict=True)]
                ),
                "output_to_client": percentiles(
                    [first - output for (_, _, first), (_, output) in zip(results, at_island, strict=True)]
                ),
                "cpu_ms_per_request": cpu,
            }))  # fmt: skip
    finally:
        islands_process.kill()
        for proc in (web, bridge, worker):
            stop(proc)


if __name__ == "__main__":
    main()
