"""What Islands report on the Sail, for the bridge (sail.bridge finds this module, as
every app's ``handlers``): registration, heartbeats and job events, parsed and validated.

Parse functions run in the bridge and return plain data for the Celery tasks of
:mod:`compute.tasks`; they raise :class:`~sail.schemas.Invalid` for anything the protocol
does not allow, and the bridge logs and skips that message.
"""

from decimal import Decimal, InvalidOperation

import orjson

from compute import job_events, tasks
from compute.models import Island
from sail import subjects
from sail.registry import Incoming, answers, register, service, together
from sail.schemas import Heartbeat, Invalid, Register, decode, host_uuid, to_builtins

MAX_PRICE = Decimal(1_000_000)


def _check_sender(msg: Incoming, host_id: str) -> str:
    normalized = host_uuid(host_id)
    if msg.host_id is not None and msg.host_id != host_id and host_uuid(msg.host_id) != normalized:
        raise Invalid("host_id of the payload does not match the subject")
    return normalized


@register("register", stream=subjects.ISLANDS_STREAM, task=tasks.register_islands)
def parse_register(msg: Incoming) -> dict:
    reg = decode(msg.data, Register)
    capabilities = to_builtins(reg.capabilities)
    return {
        "host_id": _check_sender(msg, reg.host_id),
        "received_at": msg.received_at.timestamp(),
        "capabilities": capabilities,
        "region": reg.capabilities.region,
        "agent_version": reg.version,
        "name": reg.name,
    }


def _prices(raw: dict[str, str] | None) -> dict[str, str] | None:
    """Keep the asks that are decimal numbers in range; one odd price must not make an
    Island fall silent (its whole heartbeat would be refused)."""
    if raw is None:
        return None
    prices = {}
    for slug, text in raw.items():
        try:
            price = Decimal(text)
        except InvalidOperation:
            continue
        if price.is_finite() and Decimal(0) <= price <= MAX_PRICE:
            prices[slug] = text
    return prices


def as_json(records: list[dict]) -> str:
    """Heartbeats travel as one JSON array that Postgres reads directly."""
    return orjson.dumps(records).decode()


@register("heartbeat", stream=subjects.ISLANDS_STREAM, task=tasks.ingest_heartbeats, pack=as_json)
def parse_heartbeat(msg: Incoming) -> dict:
    beat = decode(msg.data, Heartbeat)
    perf = beat.performance_estimates
    metrics = {
        name: to_builtins(value)
        for name in ("system", "gpus", "active_job_metrics", "cache", "performance_estimates")
        if (value := getattr(beat, name)) is not None
    }
    if beat.timestamp is not None:
        metrics["timestamp"] = beat.timestamp
    return {
        "host_id": _check_sender(msg, beat.host_id),
        "received_at": msg.received_at.timestamp(),
        "status": "offline" if beat.status == "offline" else "online",
        "active_jobs": beat.active_jobs,
        "agent_version": beat.agent_version,
        "metrics": metrics,
        "warm_workloads": beat.cache.warm_workload_ids if beat.cache else None,
        "asking_prices": _prices(beat.asking_prices),
        "runtimes": perf.supported_runtimes if perf else None,
        "max_concurrent_jobs": perf.max_concurrent_containers if perf else None,
    }


# --- job events (parsed by compute.job_events) -----------------------------------------
STREAM = subjects.JOB_EVENTS_STREAM
# A status may carry a Cargo's structured result (OCR: up to 1,000 lines with boxes).
register("status", stream=STREAM, task=tasks.ingest_job_status, max_bytes=262_144)(
    job_events.parse_status
)
register("output", stream=STREAM, task=tasks.ingest_job_output, max_bytes=300_000)(
    job_events.parse_output
)
register("progress", stream=STREAM, task=tasks.ingest_job_progress, max_bytes=4096)(
    job_events.parse_progress
)
register("image", stream=STREAM, task=tasks.ingest_job_images, max_bytes=16 * 1024 * 1024)(
    job_events.parse_image
)
register("lease", stream=STREAM, task=tasks.ingest_job_leases, max_bytes=4096)(
    job_events.parse_lease
)

# A batch holding several kinds goes to one task, which applies them in this order: a
# job's output before its ``succeeded`` (sent in that order by the Island), so that the
# job ends at once, with all its output stored, rather than waiting for another task.
together(
    STREAM,
    task=tasks.ingest_job_events,
    order=("output", "progress", "image", "lease", "status"),
)

# Tokens go to clients straight from the bridge (low latency); the durable path above
# stores them in the database in batches.
service(job_events.run_relay)


@answers("keyed_islands")
def keyed_islands(host_ids: set[str]) -> set[str]:
    """Which of ``host_ids`` have a key of their own (only that key may speak for them)."""
    rows = Island.objects.filter(pk__in=host_ids, nkey__isnull=False).values_list("pk", flat=True)
    return {str(pk) for pk in rows}
