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
