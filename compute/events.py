"""Typed realtime payloads sent to the browser over the Channels layer.

Producers call these functions (never ``group_send`` by hand); consumers join the group
``user_group(user_id)`` and receive messages whose ``type`` names their handler.
"""

from dataclasses import asdict, dataclass

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def user_group(user_id: object) -> str:
    return f"user.{user_id}"


@dataclass(frozen=True)
class IslandStatus:
    """An Island of the user went online/offline or sent a heartbeat that changes its card."""

    island_id: str
    status: str
    last_heartbeat_at: str | None
    type: str = "island.status"


@dataclass(frozen=True)
class IslandPaired:
    """A pairing (desktop code or mobile claim) bound an Island to the user."""

    island_id: str
    name: str
    platform: str
    runtime: str
    session_id: str | None = None
    type: str = "island.paired"


def send_to_user(user_id: object, event: IslandStatus | IslandPaired) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(user_group(user_id), asdict(event))
