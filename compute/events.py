"""Typed realtime payloads sent to the browser over the Channels layer.

Producers call these functions (never ``group_send`` by hand); consumers join the group
``user_group(user_id)`` and receive messages whose ``type`` names their handler.

Sends from sync code (views, services, Celery tasks) run on one event loop thread per
process, which keeps the channel layer's Redis connections. ``async_to_sync`` would start
a thread, an event loop and a Redis connection for every send made outside an ASGI
request, and inside one it waits behind the server's own work (bench/README.md,
"Pairing latency").
"""

import asyncio
import os
import threading
from dataclasses import asdict, dataclass

from channels.layers import get_channel_layer

SEND_TIMEOUT = 5.0


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


@dataclass(frozen=True)
class SessionsEnded:
    """Sessions of the user were ended ("Sign out everywhere"): each websocket checks
    that its own is still live, and closes if not."""

    type: str = "sessions.ended"


class _SendLoop:
    """An event loop on a daemon thread, started on first use and again after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="channel-layer-send", daemon=True
                ).start()
            return self._loop


_send_loop = _SendLoop()


def send_to_user(user_id: object, event: IslandStatus | IslandPaired | SessionsEnded) -> None:
    """Send from sync code; returns once the event is in the channel layer."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("send_to_user blocks: from async code, await group_send")
    send = layer.group_send(user_group(user_id), asdict(event))
    future = asyncio.run_coroutine_threadsafe(send, _send_loop.get())
    try:
        future.result(SEND_TIMEOUT)
    except TimeoutError:
        future.cancel()
        raise
