"""Placement among 10,000 online Islands (issue 4, bench d; see bench/README.md).

    .venv/bin/python bench/placement.py --islands 10000 --decisions 5000

On a dedicated database (default ``archipelago_bench_placement``, created and migrated
when missing; its Islands and jobs are replaced on every run) it measures:

- ``decision_without_refreshes``: one decision on a loaded index (numpy over 10,000 rows);
- ``decision``: :func:`compute.services.placement.choose` as dispatch calls it, while
  10 % of the Islands send a heartbeat each second, so that the index refreshes in its
  background thread every PLACEMENT_REFRESH_SECONDS (competing for the GIL);
- ``decision + claim``: :func:`compute.services.dispatch.dispatch_job` on a pending job:
  the decision plus the row-locked re-check and the assignment in Postgres (the NATS
  publish after commit is left out);
- the cost of a full index load and of an incremental refresh.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

from common import create_database

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/archipelago_bench_placement"
RUNTIME_SETS = [["container", "llmcpp", "wasm"], ["llmcpp"], ["onnx", "wasm"], ["container"]]
REGIONS = ["eu-west", "us-east", "ap-south", ""]


def prepare_database(url: str) -> None:
    create_database(url)


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_islands(count: int, rng: random.Random) -> None:
    from django.utils import timezone

    from compute.models import Island, Job
    from portal.models import User

    Job.objects.all().delete()
    Island.objects.all().delete()
    now = timezone.now()
    # Placement takes only paired Islands: every one of these has an owner.
    owner, _ = User.objects.get_or_create(email="placement-owner@bench.invalid")
    rows = []
    for i in range(count):
        vram = rng.choice([0, 8000, 12000, 24000, 80000])
        rows.append(Island(
            id=uuid.uuid4(), name=f"bench-{i}", status="online", region=rng.choice(REGIONS),
            capabilities={"cpu_cores": rng.choice([4, 8, 16, 32]), "ram_mb": rng.choice([8000, 16000, 32000, 64000]),
                          "gpu_vram_mb": vram},
            runtimes=rng.choice(RUNTIME_SETS),
            metrics={"performance_estimates": {"estimated_llm_tok_s": rng.uniform(5, 150),
                                               "gpu_bandwidth_gb_s": rng.uniform(0, 1000) if vram else 0}},
            warm_workloads=["bench-chat"] if rng.random() < 0.2 else [],
            asking_prices={"_default": f"{rng.uniform(0.001, 0.02):.4f}"},
            max_concurrent_jobs=rng.choice([1, 2, 4]), karma=rng.randint(0, 120),
            last_heartbeat_at=now, owner=owner,
        ))  # fmt: skip
    Island.objects.bulk_create(rows, batch_size=2000)


def pct(values: list[float], q: float) -> float:
    return round(sorted(values)[min(len(values) - 1, int(len(values) * q))] * 1000, 3)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": pct(values, 0.5), "p99_ms": pct(values, 0.99),
            "max_ms": round(max(values) * 1000, 3), "mean_ms": round(statistics.mean(values) * 1000, 3)}  # fmt: skip


def heartbeat_some(fraction: float, rng: random.Random) -> None:
    from django.utils import timezone

    from compute.models import Island

    ids = list(Island.objects.values_list("pk", flat=True))
    Island.objects.filter(pk__in=rng.sample(ids, int(len(ids) * fraction))).update(
        last_heartbeat_at=timezone.now()
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--islands", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=5_000)
    parser.add_argument("--claims", type=int, default=1_000)
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    args = parser.parse_args()
    prepare_database(args.database_url)
    setup_django(args.database_url)

    from compute.models import Cargo, Job
    from compute.services import dispatch, placement
    from portal.models import User

    rng = random.Random(7)
    make_islands(args.islands, rng)
    result: dict = {
        "islands": args.islands,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }

    index = placement.IslandIndex()
    start = time.perf_counter()
    index.refresh(full=True)
    result["full_load_ms"] = round((time.perf_counter() - start) * 1000, 1)
    heartbeat_some(0.1, rng)
    index.refreshed_at = time.time() - 1.0
    start = time.perf_counter()
    rows = index.refresh()
    result["incremental_refresh"] = {
        "rows": rows,
        "ms": round((time.perf_counter() - start) * 1000, 1),
    }

    needs = [
        placement.Need(runtime=r, slug="bench-chat", cargo_id=1, ram_mb=ram, vram_mb=vram,
                       budget=0.015, region=rng.choice(REGIONS))
        for r, ram, vram in [("llmcpp", 8000, 6000), ("container", 1000, 0), ("wasm", 0, 0), ("onnx", 512, 0)]
    ]  # fmt: skip
    static = []
    for i in range(args.decisions):  # the decision alone: numpy over the loaded index
        start = time.perf_counter()
        index.choose(needs[i % len(needs)])
        static.append(time.perf_counter() - start)
    result["decision_without_refreshes"] = summary(static)

    placement.reset_index()
    placement.choose(needs[0])  # the first call loads the index
    times, next_beat = [], time.monotonic() + 1
    for i in range(args.decisions):
        if time.monotonic() > next_beat:  # 10 % of the Islands heartbeat every second
            heartbeat_some(0.1, rng)
            next_beat = time.monotonic() + 1
        start = time.perf_counter()
        placement.choose(needs[i % len(needs)])
        times.append(time.perf_counter() - start)
    result["decision"] = summary(times)

    cargo, _ = Cargo.objects.update_or_create(
        slug="bench-chat", defaults={"name": "Bench", "category": "llm", "runtime_type": "llmcpp",
                                     "price_per_job": "0.015", "required_ram_mb": 8000, "required_vram_mb": 6000},
    )  # fmt: skip
    user, _ = User.objects.get_or_create(email="bench@example.com")
    jobs = Job.objects.bulk_create(
        [
            Job(user=user, cargo=cargo, input={"prompt": "hi"}, budget=cargo.price_per_job)
            for _ in range(args.claims)
        ]
    )
    dispatch._send = lambda *a, **k: None  # measure the coordinator's side only, no NATS
    claims, outcomes = [], []
    for job in jobs:
        start = time.perf_counter()
        outcomes.append(dispatch.dispatch_job(job.pk))
        claims.append(time.perf_counter() - start)
    result["decision_and_claim"] = {**summary(claims), "assigned": outcomes.count("assigned")}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
