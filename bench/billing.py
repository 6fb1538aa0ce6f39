"""The cost of billing on the job path (issue 5; see "Billing cost" in bench/README.md).

    .venv/bin/python bench/billing.py --jobs 300 --rounds 5

Jobs per second through submit -> complete, in-process on a dedicated database (default
``archipelago_bench_billing``, created and migrated when missing): each job goes through
:func:`compute.services.submission.submit_job` (budget resolution, the hold, the job row,
dispatch on commit: placement and the row-locked assignment) and then through the
Island message handlers of :mod:`compute.job_events` (``started``, then ``succeeded``:
settlement, Island counters and karma). Two modes, alternated round by round in the same
run so that both see the same machine load and table sizes:

- ``ledger``: the code as it runs in production;
- ``no_ledger``: the same, with the ledger's writes patched out *inside this script*
  (``billing.services.hold``, ``settle_job`` and ``release`` become no-ops). There is no
  setting for it: production cannot run without the ledger by mistake.

NATS publishing (assignments and client events) is replaced by a no-op in both modes,
so the figures are the database path only: the ledger's share of a real job path (with
its NATS round trips) is smaller than what this reports. Output: one JSON document with
jobs/s per round, the median per mode, the ledger's cost in % of throughput, and the SQL
statements per job in each mode.
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

from common import create_database

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/archipelago_bench_billing"
SLUG = "bench-billing-chat"


def prepare_database(url: str) -> None:
    create_database(url)


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "false")  # no query log kept in memory
    os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_world(islands: int, consumers: int) -> tuple[list, list]:
    """A Cargo, online Islands with asks and owners, and consumers with plenty of credits."""
    from django.conf import settings
    from django.utils import timezone

    from billing import services as ledger
    from billing.models import Balance, LedgerEntry
    from compute.models import Cargo, Island, Job, KarmaEvent
    from portal.models import User

    Job.objects.all().delete()
    KarmaEvent.objects.all().delete()
    Island.objects.all().delete()
    LedgerEntry.objects.all().delete()
    Balance.objects.all().delete()
    User.objects.filter(email__endswith="@bench.invalid").delete()
    cargo, _ = Cargo.objects.update_or_create(
        slug=SLUG,
        defaults={"name": "Bench chat", "category": "llm", "runtime_type": "container",
                  "price_per_job": Decimal("0.01"), "is_enabled": True, "is_approved": True},
    )  # fmt: skip
    settings.JOB_CONCURRENT_LIMIT = 1_000_000
    settings.PLACEMENT_REFRESH_IN_BACKGROUND = False
    settings.HEARTBEAT_OFFLINE_SECONDS = 24 * 3600  # no heartbeats here: never offline
    now = timezone.now()
    hosts = []
    for i in range(islands):
        owner = User.objects.create_user(email=f"owner{i}@bench.invalid", password=None)
        hosts.append(
            Island.objects.create(
                id=uuid.uuid4(),
                owner=owner,
                name=f"bench-{i}",
                status="online",
                capabilities={"cpu_cores": 8, "ram_mb": 16000},
                runtimes=["container"],
                asking_prices={SLUG: f"0.00{5 + i % 5}"},
                max_concurrent_jobs=1000,
                karma=i % 20,
                last_heartbeat_at=now,
            )
        )
    users = []
    for i in range(consumers):
        user = User.objects.create_user(email=f"consumer{i}@bench.invalid", password=None)
        ledger.grant(
            user=user, amount=Decimal(10**9), reason="bench", idempotency_key=f"bench:{user.pk}"
        )
        users.append(user)
    _ = cargo
    return hosts, users


def keep_islands_alive() -> None:
    from django.utils import timezone

    from compute.models import Island

    Island.objects.update(last_heartbeat_at=timezone.now(), status="online")


def stub_nats() -> None:
    """No NATS in either mode: the job path's publishes become no-ops."""
    from compute.services import dispatch, ending, jobs

    def nothing(*args, **kwargs) -> None:
        return None

    for module in (jobs, ending, dispatch):
        for name in ("publish_job_events", "publish_cancel", "publish_assignment"):
            if hasattr(module, name):
                setattr(module, name, nothing)


class LedgerOff:
    """Patch the ledger's writes out of the job path (this script only)."""

    def __enter__(self) -> "LedgerOff":
        from billing import services as ledger
        from billing import settlement
        from compute.services import settlement as job_settlement

        self.saved = [(ledger, "hold", ledger.hold), (settlement, "release", settlement.release),
                      (job_settlement, "settle_job", job_settlement.settle_job)]  # fmt: skip

        def settle_job(job, **kwargs):  # what the job is charged is still reported
            price = job.price if job.price is not None else job.budget
            return settlement.Settlement(charged=price, earned=Decimal(0), fee=Decimal(0))

        ledger.hold = lambda **kwargs: None
        settlement.release = lambda **kwargs: None
        job_settlement.settle_job = settle_job
        return self

    def __exit__(self, *exc) -> None:
        for module, name, value in self.saved:
            setattr(module, name, value)


def one_job(user) -> None:
    from compute import job_events as handlers
    from compute.services import submission
    from core import tx

    job = tx.sync(submission.submit_job, user=user, workload=SLUG, job_input={"prompt": "Hi"})
    job.refresh_from_db(fields=["island_id", "status"])
    if job.island_id is None:
        raise RuntimeError(f"job {job.pk} was not placed ({job.status})")
    host, event = str(job.island_id), {"job_id": str(job.pk), "timestamp": 1}
    handlers.on_status(host, {**event, "state": "started"})
    if not handlers.on_status(
        host, {**event, "state": "succeeded", "usage": {"prompt_tokens": 2, "completion_tokens": 4}}
    ):
        raise RuntimeError(f"job {job.pk} did not complete")


def run_round(users: list, jobs_per_thread: int) -> tuple[float, float]:
    """Jobs/s with one thread per consumer (each submitting and completing in a loop), and
    this process's CPU ms per job (the Python side: less disturbed by a busy machine)."""
    from django.db import connection

    errors: list[BaseException] = []
    barrier = threading.Barrier(len(users) + 1)

    def work(user) -> None:
        try:
            barrier.wait()
            for _ in range(jobs_per_thread):
                one_job(user)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    barrier.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if errors:
        raise errors[0]
    done = len(users) * jobs_per_thread
    return done / elapsed, 1000 * cpu / done


def queries_per_job(user) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        one_job(user)
    return len(captured)


def check_books(users: list) -> dict:
    """After the ledger rounds: every balance equals its entries, nothing left held."""
    from django.db.models import Sum

    from billing.models import Balance, LedgerEntry

    held = Balance.objects.filter(user__in=users).aggregate(s=Sum("held"))["s"]
    captures = LedgerEntry.objects.filter(kind="capture").aggregate(s=Sum("amount"))["s"]
    earnings = LedgerEntry.objects.filter(kind="earning").aggregate(s=Sum("amount"))["s"]
    return {"held_after": str(held), "captures_equal_earnings": captures == earnings}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300, help="jobs per round (all threads)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per mode, alternated")
    parser.add_argument("--threads", type=int, default=1, help="concurrent consumers")
    parser.add_argument("--islands", type=int, default=20)
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    prepare_database(url)
    setup_django(url)
    stub_nats()
    _, users = make_world(args.islands, args.threads)
    per_thread = max(1, args.jobs // args.threads)

    one_job(users[0])  # warm up: imports, the placement index, prepared connections
    with LedgerOff():
        one_job(users[0])
    result: dict = {
        "jobs_per_round": per_thread * args.threads,
        "threads": args.threads,
        "islands": args.islands,
        "queries_per_job": {"ledger": queries_per_job(users[0])},
    }
    with LedgerOff():
        result["queries_per_job"]["no_ledger"] = queries_per_job(users[0])
    rates: dict[str, list[float]] = {"ledger": [], "no_ledger": []}
    cpu: dict[str, list[float]] = {"ledger": [], "no_ledger": []}
    for i in range(args.rounds):
        order = ["ledger", "no_ledger"] if i % 2 == 0 else ["no_ledger", "ledger"]
        for mode in order:
            keep_islands_alive()
            with LedgerOff() if mode == "no_ledger" else contextlib.nullcontext():
                rate, cpu_ms = run_round(users, per_thread)
            rates[mode].append(rate)
            cpu[mode].append(cpu_ms)
    with_ledger = statistics.median(rates["ledger"])
    without = statistics.median(rates["no_ledger"])
    result.update(
        {
            "jobs_per_second": {k: [round(r, 1) for r in v] for k, v in rates.items()},
            "median_cpu_ms_per_job": {k: round(statistics.median(v), 2) for k, v in cpu.items()},
            "median_jobs_per_second": {
                "ledger": round(with_ledger, 1),
                "no_ledger": round(without, 1),
            },
            "ledger_cost_percent": round(100 * (1 - with_ledger / without), 1),
            # The same from this process's CPU time per job (steadier on a busy machine).
            "ledger_cost_percent_cpu": round(
                100 * (1 - statistics.median(cpu["no_ledger"]) / statistics.median(cpu["ledger"])),
                1,
            ),
            "books": check_books(users),
        }
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
