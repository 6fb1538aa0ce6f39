"""The worker's cost of one chat job's Island messages (see bench/README.md, "Stop 11").

    .venv/bin/python bench/job_messages.py --jobs 300

On the bench database (``DATABASE_URL``, default ``archipelago_bench``), with the real
Redis and NATS: running jobs, each holding its budget, get what an Island sends for a
chat job of 8 tokens, applied by the functions the Celery worker calls for them, one job
after the other in this thread: ``started``, a batch of 8 output chunks and the final
one, then ``succeeded`` (the job's end: its money, its Island's counters, its last
events). Measured per job: the thread's CPU time and the wall time, p50 over the jobs
after the first 10 % (warm-up). No Celery, no bridge: the cost of the job path itself.
"""

import argparse
import json
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_env
from relay import accounts, bench_cargo_and_island, ensure_streams_exist, setup_django

TOKENS = [f" word{i}" for i in range(8)]


def running_jobs(count: int) -> tuple[str, list[str]]:
    """An Island and ``count`` jobs running on it, each holding its budget."""
    from django.utils import timezone

    from billing import services as ledger
    from compute.models import Job

    ((user, _),) = accounts(1, "messages")
    cargo, island = bench_cargo_and_island(user, count)
    ids = []
    for _ in range(count):
        now = timezone.now()
        job = Job.objects.create(user=user, cargo=cargo, island=island, status="running",
                                 budget=Decimal("0.01"), attempts=1, assigned_at=now)  # fmt: skip
        ledger.hold(user_id=user.pk, job_id=job.pk, amount=job.budget, new_job=True)
        ids.append(str(job.pk))
    return str(island.pk), ids


def one_job(host_id: str, job_id: str) -> None:
    from compute.services import jobs

    assert jobs.apply_status(host_id=host_id, job_id=job_id, state="started")
    chunks = [{"job_id": job_id, "seq": i + 1, "chunk": t} for i, t in enumerate(TOKENS)]
    chunks.append({"job_id": job_id, "seq": len(TOKENS) + 1, "chunk": "", "is_final": True})
    assert jobs.apply_output(host_id=host_id, chunks=chunks) == len(chunks)
    usage = {"prompt_tokens": 7, "completion_tokens": len(TOKENS)}
    assert jobs.apply_status(host_id=host_id, job_id=job_id, state="succeeded", usage=usage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()
    setup_django(bench_env())
    ensure_streams_exist()
    host_id, ids = running_jobs(args.jobs)
    cpu, wall = [], []
    for job_id in ids:
        cpu_at, wall_at = time.thread_time(), time.perf_counter()
        one_job(host_id, job_id)
        cpu.append(time.thread_time() - cpu_at)
        wall.append(time.perf_counter() - wall_at)
    skip = len(ids) // 10
    print(json.dumps({
        "jobs": len(ids) - skip,
        "cpu_ms_p50": round(statistics.median(cpu[skip:]) * 1000, 3),
        "wall_ms_p50": round(statistics.median(wall[skip:]) * 1000, 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
