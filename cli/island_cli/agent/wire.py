"""Subjects and encoding of the Island protocol, as the Island sees them."""

import json
import time
from typing import Any

from nats.aio.client import Client

REGISTER = "coordinator.hosts.register"
PAIRING = "coordinator.hosts.pairing"


def host_subject(host_id: str, kind: str) -> str:
    return f"host.{host_id}.{kind}"


def now_ms() -> int:
    return int(time.time() * 1000)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def decode(data: bytes) -> dict[str, Any] | None:
    """The JSON object in a message, or None when it is not one."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


async def publish(nc: Client, subject: str, payload: dict[str, Any]) -> None:
    await nc.publish(subject, encode(payload))


def status_usage(usage: dict[str, Any]) -> dict[str, int]:
    """A runtime's usage as ``succeeded`` carries it: tokens, and what an ONNX job
    spent (``milliseconds``, ``pixels``) when it says."""
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    metered: dict[str, int] = {k: int(usage[k]) for k in ("milliseconds", "pixels") if k in usage}
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        **metered,
    }


def side_message(job_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """A workload's ``progress`` or ``image`` event as the protocol's message."""
    if event["type"] == "progress":
        return {"job_id": job_id, "step": event.get("step"), "total": event.get("total")}
    image = {
        "job_id": job_id,
        "image_data": event.get("data"),
        "format": event.get("format"),
        "width": event.get("width"),
        "height": event.get("height"),
        "seed": event.get("seed"),
    }
    return {key: value for key, value in image.items() if value is not None}
