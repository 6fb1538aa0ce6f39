"""Registration, heartbeats, pairing requests and pings: parse and validate.

Parse functions run in the bridge and return plain data for the Celery tasks of
:mod:`compute.tasks`; they raise :class:`~sail.schemas.Invalid` for anything the protocol
does not allow, and the bridge logs and skips that message.
"""

import logging
import time
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from compute import tasks
from pairing import services as pairing
from sail import subjects
from sail.registry import Incoming, register
from sail.schemas import Heartbeat, Invalid, PairingRequest, Register, decode, to_builtins

logger = logging.getLogger(__name__)
MAX_PRICE = Decimal(1_000_000)


def host_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Invalid(f"host_id is not a UUID: {value[:40]!r}") from None


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


def pairing_reply(data: bytes, key: str | None = None) -> dict[str, Any]:
    """The reply body of a pairing request (blocking: call it off the loop); ``key``: the
    requester's public key (``coordinator.hosts.pairing.{key}``), None for the field
    user's requests (``coordinator.hosts.pairing``)."""
    try:
        request = decode(data, PairingRequest)
        host_id = host_uuid(request.host_id)
    except Invalid as exc:
        return {"success": False, "error": f"invalid pairing request: {exc}"}
    registration = None
    if key is not None and request.capabilities is not None:
        registration = {
            "capabilities": to_builtins(request.capabilities),
            "region": request.capabilities.region,
            "agent_version": request.version,
            "name": request.name,
        }
    try:
        return pairing.request_pairing_code(host_id, key=key, registration=registration)
    except Exception:
        logger.exception("pairing request of %s failed", host_id)
        return {"success": False, "error": "pairing is unavailable right now, try again later"}


def ping_reply(data: bytes) -> dict[str, Any]:
    """The reply to ``host.{id}.ping``: at once, whatever was sent."""
    return {"pong": True, "timestamp": int(time.time() * 1000)}
