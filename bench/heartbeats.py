"""Heartbeat ingestion under load (issue 3, bench a and c; see bench/README.md).

    .venv/bin/python bench/heartbeats.py --islands 50000 --seconds 60
    .venv/bin/python bench/heartbeats.py --islands 50000 --bridges 2 --workers 2

N simulated Islands register, then each publishes a full heartbeat every 10 s (phases
spread evenly, so N/10 heartbeats per second) on core NATS, exactly like field Islands.
The bench starts the real bridge (``manage.py sail_bridge``) and one Celery worker on a
dedicated database (``--bridges`` and ``--workers`` start more: they share the durable
consumer and the Celery queue), and measures while the load runs:

- ingestion: heartbeats per second acked by the worker, which acks only after its
  commit (so "acked" means "in Postgres"), and the consumer backlog;
- lag: for a sample of Islands, a poller reads ``last_heartbeat_at`` (the NATS server's
  receive time) every 100 ms; when it changes, lag = poll time - that receive time, an
  upper bound of publish → visible in the database;
- memory and CPU: of the bridges and of the workers (with their children), summed.

The database (default ``archipelago_bench``) is created and migrated when missing; its
Islands are replaced on every run.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from common import bench_env, create_database, nats_options

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/archipelago_bench"
NAMESPACE = uuid.UUID("5a11b0a7-0000-4000-8000-000000000000")


def host_ids(count: int) -> list[str]:
    return [str(uuid.uuid5(NAMESPACE, str(i))) for i in range(count)]


def prepare_database(url: str) -> None:
    import psycopg

    create_database(url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=BASE_DIR,
        check=True,
        env=os.environ,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE compute_island CASCADE")


def spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=BASE_DIR, env=os.environ, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def rss_mb(procs: list[subprocess.Popen]) -> float:
    import psutil

    total = 0.0
    for proc in procs:
        try:
            main = psutil.Process(proc.pid)
            total += sum(p.memory_info().rss for p in [main, *main.children(recursive=True)])
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def cpu_seconds(procs: list[subprocess.Popen]) -> float:
    import psutil

    total = 0.0
    for proc in procs:
        try:
            main = psutil.Process(proc.pid)
            total += sum(sum(p.cpu_times()[:2]) for p in [main, *main.children(recursive=True)])
        except psutil.NoSuchProcess:
            pass
    return total


def full_heartbeat(host_id: str, rng: random.Random) -> dict:
    return {
        "host_id": host_id,
        "status": "online",
        "active_jobs": rng.randint(0, 2),
        "timestamp": int(time.time() * 1000),
        "agent_version": "0.9.1",
        "system": {
            "cpu_percent": round(rng.uniform(0, 100), 1),
            "memory_used_mb": rng.randint(2000, 60000),
            "memory_total_mb": 65536,
            "disk_used_gb": 412.5,
            "disk_total_gb": 1000,
        },
        "gpus": [
            {
                "index": 0,
                "utilization_percent": rng.randint(0, 100),
                "memory_used_mb": rng.randint(0, 24000),
                "memory_total_mb": 24576,
                "temperature_c": rng.randint(35, 80),
                "power_draw_w": round(rng.uniform(30, 400), 1),
            }
        ],
        "active_job_metrics": [
            {
                "job_id": "7d3c3f7e-1b1a-4a39-9a52-3f1d1e2f0a11",
                "job_type": "llm",
                "duration_ms": rng.randint(0, 60000),
                "tokens_generated": rng.randint(0, 900),
            }
        ],
        "cache": {
            "cached_image_count": 4,
            "cached_size_mb": 18000,
            "warm_workload_count": 2,
            "warm_workload_ids": ["llama-3-8b", "sdxl-turbo"],
        },
        "performance_estimates": {
            "gpu_bandwidth_gb_s": 1008,
            "estimated_llm_tok_s": 92.5,
            "max_concurrent_containers": 2,
            "wasm_memory_limit_mb": 512,
            "supported_runtimes": ["container", "llmcpp", "wasm", "diffusers"],
            "nats_rtt_ms": 1.2,
        },
        "asking_prices": {"llama-3-8b": "0.020", "sdxl-turbo": "0.050", "_default": "0.010"},
    }


class Lag:
    """Polls sampled Islands and records publish → visible lag in seconds."""

    def __init__(self, url: str, sample: list[str]) -> None:
        self.url, self.sample = url, sample
        self.lags: list[float] = []
        self.recording = False
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        seen: dict[str, object] = {}
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                rows = conn.execute(
                    "SELECT id::text, last_heartbeat_at FROM compute_island WHERE id = ANY(%s::uuid[])",
                    [self.sample],
                ).fetchall()
                now = time.time()
                for host_id, at in rows:
                    if at is not None and seen.get(host_id) != at:
                        if self.recording and host_id in seen:
                            self.lags.append(now - at.timestamp())
                        seen[host_id] = at
                self.stop.wait(0.1)


async def publish_registrations(nc, ids: list[str]) -> None:
    import orjson

    for i, host_id in enumerate(ids):
        payload = {
            "host_id": host_id,
            "capabilities": {"gpu_model": "RTX 4090", "gpu_vram_mb": 24576, "cpu_cores": 16,
                             "ram_mb": 65536, "region": "eu-west"},
            "version": "0.9.1",
        }  # fmt: skip
        # What an Island with its own key publishes once paired (the coordinator's
        # identity here speaks for all of them: one connection, not 50,000).
        await nc.publish(f"host.{host_id}.register", orjson.dumps(payload))
        if i % 1000 == 999:
            await nc.flush()
    await nc.flush()


async def publish_heartbeats(
    nc, ids: list[str], interval: float, until: float, counter: list
) -> None:
    """Each Island beats every ``interval`` seconds, phases spread evenly."""
    import orjson

    rng = random.Random(7)
    count = len(ids)
    start = time.monotonic()
    sent = 0
    while time.monotonic() < until:
        elapsed = time.monotonic() - start
        due = int(elapsed / interval * count)
        while sent < due:
            host_id = ids[sent % count]
            await nc.publish(
                f"host.{host_id}.heartbeat", orjson.dumps(full_heartbeat(host_id, rng))
            )
            sent += 1
        counter[0] = sent
        await asyncio.sleep(0.01)


async def main(args: argparse.Namespace) -> dict:
    import nats
    import psycopg

    ids = host_ids(args.islands)
    logs = BASE_DIR / ".state" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    bridge = [
        spawn([sys.executable, "manage.py", "sail_bridge"], logs / f"bridge-{n}.log")
        for n in range(args.bridges)
    ]
    celery = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", args.pool,
              "--concurrency", str(args.concurrency), "--prefetch-multiplier", "1",
              "--loglevel", "WARNING", "--without-heartbeat", "--without-mingle",
              "--without-gossip"]  # fmt: skip
    worker = [
        spawn([*celery, "--hostname", f"bench{n}@%h"], logs / f"worker-{n}.log")
        for n in range(args.workers)
    ]
    nc = await nats.connect(os.environ["NATS_URL"], pending_size=64 * 2**20, **nats_options())
    monitor = await nats.connect(os.environ["NATS_URL"], **nats_options())  # not behind the load
    js = monitor.jetstream(timeout=15)
    db = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    try:
        for _ in range(100):  # the bridge creates the streams and consumers
            try:
                await js.consumer_info("ISLANDS", "coordinator-islands")
                break
            except Exception:
                await asyncio.sleep(0.2)
        await js.purge_stream("ISLANDS")

        started = time.monotonic()
        await publish_registrations(nc, ids)
        while db.execute("SELECT count(*) FROM compute_island").fetchone()[0] < len(ids):
            await asyncio.sleep(0.2)
            if time.monotonic() - started > 120:
                raise SystemExit("registrations did not arrive")
        registered_s = time.monotonic() - started
        print(f"registered {len(ids)} Islands in {registered_s:.1f} s", flush=True)

        lag = Lag(os.environ["DATABASE_URL"], random.Random(1).sample(ids, min(1000, len(ids))))
        poller = threading.Thread(target=lag.run, daemon=True)
        poller.start()

        counter = [0]
        begin = time.monotonic()
        end = begin + args.warmup + args.seconds
        load = asyncio.create_task(publish_heartbeats(nc, ids, args.interval, end, counter))
        await asyncio.sleep(args.warmup)

        lag.recording = True
        first = await js.consumer_info("ISLANDS", "coordinator-islands")
        sent_first, t_first = counter[0], time.monotonic()
        cpu_first = cpu_seconds(bridge), cpu_seconds(worker)
        rss_bridge, rss_worker, backlog = [], [], []
        while time.monotonic() < end - 0.5:
            rss_bridge.append(rss_mb(bridge))
            rss_worker.append(rss_mb(worker))
            info = await js.consumer_info("ISLANDS", "coordinator-islands")
            backlog.append(info.num_pending + info.num_ack_pending)
            await asyncio.sleep(1)
        last = await js.consumer_info("ISLANDS", "coordinator-islands")
        sent_last, t_last = counter[0], time.monotonic()
        cpu_last = cpu_seconds(bridge), cpu_seconds(worker)
        lag.recording = False
        await load
        lag.stop.set()
        poller.join()

        window = t_last - t_first
        lags = sorted(lag.lags)

        def pct(p: float) -> float:
            return round(lags[min(len(lags) - 1, int(p * len(lags)))] * 1000) if lags else -1

        return {
            "islands": len(ids),
            "interval_s": args.interval,
            "window_s": round(window, 1),
            "registered_in_s": round(registered_s, 1),
            "published_per_s": round((sent_last - sent_first) / window),
            "ingested_per_s": round(
                (last.ack_floor.stream_seq - first.ack_floor.stream_seq) / window
            ),
            "backlog_max": max(backlog),
            "lag_samples": len(lags),
            "lag_p50_ms": pct(0.50),
            "lag_p99_ms": pct(0.99),
            "lag_max_ms": round(lags[-1] * 1000) if lags else -1,
            "rss_bridge_max_mb": round(max(rss_bridge)),
            "rss_worker_max_mb": round(max(rss_worker)),
            "rss_total_max_mb": round(
                max(b + w for b, w in zip(rss_bridge, rss_worker, strict=True))
            ),
            "cpu_bridge_percent": round((cpu_last[0] - cpu_first[0]) / window * 100),
            "cpu_worker_percent": round((cpu_last[1] - cpu_first[1]) / window * 100),
            "load_average_1m": os.getloadavg()[0],
            "worker": f"{args.workers} x {args.pool} x{args.concurrency}",
            "bridges": args.bridges,
        }
    finally:
        await nc.close()
        await monitor.close()
        db.close()
        for proc in (*bridge, *worker):
            proc.terminate()
            proc.wait(timeout=30)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--islands", type=int, default=50_000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between beats")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--pool", default="solo", help="Celery pool of the worker")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--bridges", type=int, default=1, help="bridge processes")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.update(bench_env())  # the Sail's own nats-server unless NATS_URL
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", "bench-only-" + uuid.uuid4().hex)
    prepare_database(os.environ["DATABASE_URL"])
    result = asyncio.run(main(arguments))
    print(json.dumps(result, indent=2))
