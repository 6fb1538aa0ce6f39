"""The coordinator's Prometheus metrics, counted in every process (web, worker, bridge)
and served together at ``/metrics`` (config.metrics_view).

Multiprocess mode: each process writes its counters and histograms to memory-mapped files
in ``PROMETHEUS_MULTIPROC_DIR`` (settings: STATE_DIR/metrics unless set; the launcher
empties it on start), and the web process sums them on a scrape. A file is named after
its process; here after the host too, so that containers sharing one volume (the
docker-compose ``cluster`` profile) never write the same file. A process that ended
keeps counting in the totals, as a counter must. What is a level rather than a count
(jobs per state, online Islands, consumer backlogs) is read at scrape time instead.

Updating one costs a lock and a write into the process's mapped file: microseconds.
"""

import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.urls import Resolver404, get_resolver
from django.utils import timezone
from prometheus_client import Counter, Histogram, values

_HOST = socket.gethostname()
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    values.ValueClass = values.MultiProcessValue(lambda: f"{_HOST}-{os.getpid()}")

FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)

REQUESTS = Counter(
    "archipelago_http_requests", "HTTP requests by route, method and status",
    ["route", "method", "status"],
)  # fmt: skip
REQUEST_SECONDS = Histogram(
    "archipelago_http_request_duration_seconds",
    "Time to the response's headers (a stream's start), by route and method",
    ["route", "method"], buckets=FAST,
)  # fmt: skip
JOBS_SUBMITTED = Counter("archipelago_jobs_submitted", "Jobs accepted, by Cargo", ["cargo"])
JOBS_ENDED = Counter(
    "archipelago_jobs_ended", "Jobs that reached a final state, by state and Cargo",
    ["state", "cargo"],
)  # fmt: skip
TIME_TO_FIRST_TOKEN = Histogram(
    "archipelago_time_to_first_token_seconds",
    "From a job's submission to its first output stored", buckets=(*FAST, 30.0, 60.0),
)  # fmt: skip
QUEUE_WAIT = Histogram(
    "archipelago_queue_wait_seconds", "From a job's submission to its assignment", buckets=SLOW
)
DISPATCH_DECISIONS = Counter(
    "archipelago_dispatch_decisions", "Dispatch decisions: assigned, queued, gone", ["outcome"]
)
DISPATCH_FAILURES = Counter(
    "archipelago_dispatch_failures",
    "Assignments the Sail did not confirm (each job is queued again)",
)
HEARTBEAT_LAG = Histogram(
    "archipelago_heartbeat_lag_seconds",
    "From the NATS server's receipt of a heartbeat to its commit", buckets=FAST,
)  # fmt: skip
LEDGER_MOVEMENTS = Counter(
    "archipelago_ledger_movements", "Ledger entries written, by kind", ["kind"]
)
LEDGER_CREDITS = Counter(
    "archipelago_ledger_credits", "Credits moved by ledger entries, by kind", ["kind"]
)
RATE_LIMIT_REFUSALS = Counter(
    "archipelago_rate_limit_refusals", "Requests refused by a rate limit (429)", ["by"]
)
PAIRING_ATTEMPTS = Counter(
    "archipelago_pairing_attempts", "Uses of pairing codes, by kind and outcome",
    ["kind", "outcome"],
)  # fmt: skip


def first_token(created_at: datetime) -> None:
    TIME_TO_FIRST_TOKEN.observe((timezone.now() - created_at).total_seconds())


def dispatched(outcome: str, created_at: datetime) -> None:
    """Count a dispatch decision (once committed), and an assignment's wait."""
    DISPATCH_DECISIONS.labels(outcome).inc()
    if outcome == "assigned":
        QUEUE_WAIT.observe((timezone.now() - created_at).total_seconds())


def ledger_moved(entries: list[tuple[str, Any]]) -> None:
    """Count ``(kind, amount)`` entries (once committed: the caller's on_commit); an
    adjustment's amount may be negative: its size is counted."""
    for kind, amount in entries:
        LEDGER_MOVEMENTS.labels(kind).inc()
        LEDGER_CREDITS.labels(kind).inc(abs(float(amount)))


# --- requests: every HTTP request of the web process, the API's fast lane included.
@lru_cache(maxsize=4096)
def route_of(path: str) -> str:
    """The URL pattern that serves ``path`` (a bounded label: ids are not in it)."""
    try:
        return "/" + str(get_resolver().resolve(path).route)
    except Resolver404:
        return "static" if path.startswith("/static/") else "unmatched"


ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Any]


def instrument(app: ASGIApp) -> ASGIApp:
    """``app`` counting its HTTP requests by route, method and status, and timing each
    until its response's headers are sent."""

    async def counted(scope: dict, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        status = 0

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route, method = route_of(scope["path"]), scope["method"]
                REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - started)
                REQUESTS.labels(route, method, str(status)).inc()
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            if not status:  # ended without an answer: the client left, or a crash
                REQUESTS.labels(route_of(scope["path"]), scope["method"], "0").inc()

    return counted
