"""NATS connections of the coordinator's processes.

- :data:`sail`, for synchronous code (Django views, Celery tasks, on_commit hooks):
  nats-py is asyncio-only, so this keeps one connection per process on a background
  event loop thread and exposes blocking calls. It reconnects after a fork (Celery
  prefork).
- :func:`loop_connection`, for async code on the web server's event loop (the API's
  fast lane, SSE): one connection per process, on that loop.
The bridge keeps a connection of its own. Every one of them authenticates as one of the
coordinator's identities (:func:`credentials`, from ``SAIL_SECRET``).
"""

import asyncio
import functools
import logging
import os
import threading
from typing import Any

import nats
import nats.errors
import orjson
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from nats.aio.client import Client

from sail.keys import CoordinatorKeys

logger = logging.getLogger(__name__)
TIMEOUT = 5.0


@functools.cache
def _keys(secret: str) -> CoordinatorKeys:
    return CoordinatorKeys.from_secret(secret)


def coordinator_keys() -> CoordinatorKeys:
    if not settings.SAIL_SECRET:
        raise ImproperlyConfigured("SAIL_SECRET is not set: the Sail admits no one without it")
    return _keys(settings.SAIL_SECRET)


def servers(url: str | None = None) -> list[str]:
    """The server URLs of ``url`` (``settings.NATS_URL`` by default): one, or a cluster's,
    comma-separated. nats-py tries them in turn and reconnects to a surviving one."""
    found = [part.strip() for part in (url or settings.NATS_URL).split(",") if part.strip()]
    if not found:
        raise ImproperlyConfigured("NATS_URL names no server")
    return found


def credentials(role: str = "coordinator") -> dict[str, Any]:
    """nats-py's connect options for one of the coordinator's identities: ``coordinator``
    (every process), ``callout`` (the auth callout), ``system`` (disconnects Islands)."""
    return {"nkeys_seed_str": getattr(coordinator_keys(), role)}


async def log_error(exc: Exception) -> None:
    """nats-py's errors (a server of a cluster that is down, a slow consumer) as one
    line each, instead of its default traceback on every reconnection attempt."""
    logger.warning("NATS: %s", exc or type(exc).__name__)


class SyncNats:
    def __init__(self, role: str = "coordinator") -> None:
        self.role = role
        self._lock = threading.Lock()
        self._pid = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Client | None = None

    def _run(self, coro: Any, timeout: float = TIMEOUT) -> Any:
        loop = self._ensure()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid() or self._loop is None:
                self._pid = os.getpid()
                self._nc = None
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="nats-sync", daemon=True
                ).start()
            if self._nc is None or self._nc.is_closed:
                connect = nats.connect(
                    servers(),
                    name=f"coordinator-{self.role}-{os.getpid()}",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    error_cb=log_error,
                    **credentials(self.role),
                )
                self._nc = asyncio.run_coroutine_threadsafe(connect, self._loop).result(TIMEOUT)
            return self._loop

    @property
    def nc(self) -> Client:
        self._ensure()
        assert self._nc is not None
        return self._nc

    def publish(self, subject: str, payload: dict) -> None:
        """Core NATS publish, flushed so that it has left this process on return."""

        async def go() -> None:
            await self.nc.publish(subject, orjson.dumps(payload))
            await self.nc.flush(timeout=TIMEOUT)  # type: ignore[arg-type]  # a float works

        self._run(go())

    def request(self, subject: str, payload: dict, timeout: float = TIMEOUT) -> dict:
        msg = self._run(
            self.nc.request(subject, orjson.dumps(payload), timeout=timeout), timeout + 1
        )
        return orjson.loads(msg.data)

    def call(self, coro_factory: Any, timeout: float = TIMEOUT) -> Any:
        """Run ``coro_factory(nc)`` on the connection's loop and return its result."""
        return self._run(coro_factory(self.nc), timeout)


sail = SyncNats()
# The system account's connection, opened on first use (rare: a revocation).
system = SyncNats("system")


class _LoopConnection:
    """The connection, and its ``epoch``: a count of the moments it may have lost core
    messages (it disconnected, or fell behind its subscriptions), which live readers
    compare with the epoch they started in (compute.feed)."""

    def __init__(self) -> None:
        self.nc: Client | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock: asyncio.Lock | None = None
        self.epoch = 0

    async def _lost(self, *args: Any) -> None:
        self.epoch += 1

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            self.epoch += 1
        logger.warning("NATS error: %s", exc)

    async def get(self) -> Client:
        loop = asyncio.get_running_loop()
        if self.nc is not None and self.loop is loop and not self.nc.is_closed:
            return self.nc
        if self.loop is not loop or self.lock is None:
            # A connection belongs to the loop that made it (tests run several loops).
            self.loop, self.lock, self.nc = loop, asyncio.Lock(), None
        async with self.lock:
            if self.nc is None or self.nc.is_closed:
                self.nc = await nats.connect(
                    servers(),
                    name=f"coordinator-web-{os.getpid()}",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    disconnected_cb=self._lost,
                    error_cb=self._on_error,
                    **credentials(),
                )
        return self.nc


_loop_connection = _LoopConnection()
loop_connection = _loop_connection.get


def loop_epoch() -> int:
    return _loop_connection.epoch
