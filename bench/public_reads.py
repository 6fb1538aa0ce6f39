"""What the public reads cost with a month of market data (see bench/README.md, "Stop 12").

    .venv/bin/python bench/public_reads.py --cargos 13 --days 30 --jobs 100000

On the bench database (``DATABASE_URL``, default ``archipelago_bench``) with the real
Redis: ``--cargos`` Cargos with a rate snapshot every 5 minutes for ``--days`` days, and
``--jobs`` more jobs (one in 50 queued, the others completed). Then each endpoint that
anyone may call, through Django's whole request cycle in this process: the first request
(nothing kept: it reads and counts) and the p50 of the next ``--repeat``.
"""

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_env
from relay import accounts, setup_django


def seed(cargo_count: int, days: int, job_count: int) -> tuple[str, str]:
    """The Cargos, their snapshots and the jobs; the first Cargo's slug and an Island."""
    from django.utils import timezone

    from compute.models import Cargo, Island, Job, RateSnapshot

    cargos = [
        Cargo.objects.update_or_create(
            slug=f"public-{i}", defaults={"name": f"Public {i}", "price_per_job": Decimal("0.01")}
        )[0]
        for i in range(cargo_count)
    ]
    RateSnapshot.objects.filter(cargo__in=cargos).delete()
    now = timezone.now()
    price, top = Decimal("0.01"), Decimal("0.02")
    snapshots = (
        RateSnapshot(cargo=cargo, avg_price=price, min_price=price, max_price=top, num_hosts=3,
                     created_at=now - timedelta(minutes=5 * i))
        for cargo in cargos
        for i in range(days * 24 * 12)
    )  # fmt: skip
    RateSnapshot.objects.bulk_create(snapshots, batch_size=5000)
    ((user, _),) = accounts(1, "public")
    jobs = (
        Job(id=uuid.uuid4(), user=user, cargo=cargos[i % cargo_count], input={}, budget=price,
            status="queued" if i % 50 == 0 else "completed", completed_at=now)
        for i in range(job_count)
    )  # fmt: skip
    Job.objects.bulk_create(jobs, batch_size=5000)
    island = Island.objects.create(id=uuid.uuid4(), name="public-bench", owner=user)
    return cargos[0].slug, str(island.pk)


def forget() -> None:
    """Nothing kept from an earlier request (or run): the counts and the charts."""
    from django.core.cache import cache
    from django.core.cache.utils import make_template_fragment_key

    from compute.selectors.market import newest_snapshot_id

    cache.delete_many(["network:stats", "market:demand"])
    for window in ("1h", "24h", "7d", "30d"):
        cache.delete(make_template_fragment_key("price-history", [window, newest_snapshot_id()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cargos", type=int, default=13)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    setup_django(bench_env(ALLOWED_HOSTS="testserver"))
    clean_up()  # what a run stopped half-way left
    slug, host_id = seed(args.cargos, args.days, args.jobs)
    paths = [
        "/api/v1/schema",
        "/api/v1/market/rates",
        f"/api/v1/market/history/{slug}?window=30d",
        "/api/v1/network/stats",
        f"/api/v1/island/recommendations?host_id={host_id}",
        "/exchange?window=24h",
        "/exchange?window=7d",
        "/exchange?window=30d",
    ]
    try:
        print(json.dumps(measure(paths, args.repeat), indent=1))
    finally:  # other benches must not find 2,000 queued jobs waiting for no Island
        clean_up()


def measure(paths: list[str], repeat: int) -> dict:
    from django.test import Client

    client = Client()
    forget()
    results = {}
    for path in paths:
        started = time.perf_counter()
        response = client.get(path)
        first = time.perf_counter() - started
        assert response.status_code == 200, (path, response.status_code)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            client.get(path)
            times.append(time.perf_counter() - started)
        results[path] = {
            "first_ms": round(first * 1000, 1),
            "next_p50_ms": round(statistics.median(times) * 1000, 1),
            "bytes": len(response.content),
        }
    return results


def clean_up() -> None:
    from compute.models import Cargo, Island, Job, RateSnapshot

    cargos = Cargo.objects.filter(slug__startswith="public-")
    Job.objects.filter(cargo__in=cargos).delete()
    RateSnapshot.objects.filter(cargo__in=cargos).delete()
    Island.objects.filter(name="public-bench").delete()


if __name__ == "__main__":
    main()
