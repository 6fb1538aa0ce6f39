"""NATS clients of the security tests, each one identity, driven from the test's thread:
what a client publishes, receives and is refused (the server's permission violations
reach nats-py's error callback, not the caller)."""

import asyncio
import contextlib
import threading
import time
from typing import Any

import nats
import orjson
from nats.aio.client import Client

TIMEOUT = 5.0


class Peer:
    """One connection on a loop of its own."""

    def __init__(self, url: str, **options: Any) -> None:
        self.seed: str | None = options.get("nkeys_seed_str")
        self.errors: list[str] = []
        self.disconnections = 0
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.nc: Client = self.run(self._connect(url, options))

    async def _connect(self, url: str, options: dict[str, Any]) -> Client:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc).lower())

        async def on_disconnected() -> None:
            self.disconnections += 1

        return await nats.connect(
            url,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            allow_reconnect=options.pop("allow_reconnect", False),
            reconnect_time_wait=0.2,
            connect_timeout=TIMEOUT,
            **options,
        )

    def run(self, coro: Any, timeout: float = TIMEOUT + 2) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def key(self) -> str:
        from sail.keys import public_key

        assert self.seed is not None
        return public_key(self.seed)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)

    # --- what it does
    def publish(self, subject: str, payload: dict | bytes, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)

        async def go() -> None:
            await self.nc.publish(subject, data, headers=headers)
            await self.nc.flush()

        self.run(go())

    def subscribe(self, subject: str) -> "Inbox":
        inbox = Inbox()

        async def go() -> None:
            await self.nc.subscribe(subject, cb=inbox.add)
            # nats-py may send flush's PING ahead of the SUB: twice makes sure.
            await self.nc.flush()
            await self.nc.flush()

        self.run(go())
        return inbox

    def request(self, subject: str, payload: dict | bytes, timeout: float = 2.0) -> dict | None:
        """The reply, or None when nobody answered (or the request was refused)."""
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        try:
            msg = self.run(self.nc.request(subject, data, timeout=timeout), timeout + 2)
        except (nats.errors.Error, TimeoutError):
            return None
        return orjson.loads(msg.data)

    # --- what it was told
    def refused(self, action: str, subject: str, within: float = TIMEOUT) -> bool:
        """Whether the server refused it ``action`` ("publish", "subscription") on
        ``subject``."""
        wanted = f'permissions violation for {action} to "{subject.lower()}"'
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if any(wanted in error for error in self.errors):
                return True
            time.sleep(0.02)
        return False


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def add(self, msg: Any) -> None:
        self.messages.append(msg)

    def subjects(self) -> list[str]:
        return [msg.subject for msg in self.messages]


def refused_to_connect(url: str, **options: Any) -> str:
    """The reason a connection is refused ("" if it is admitted)."""

    async def attempt() -> str:
        try:
            nc = await nats.connect(
                url, allow_reconnect=False, connect_timeout=TIMEOUT, max_reconnect_attempts=0,
                error_cb=_quiet, **options,
            )  # fmt: skip
        except Exception as exc:
            return str(exc) or type(exc).__name__
        await nc.close()
        return ""

    return asyncio.run(attempt())


async def _quiet(exc: Exception) -> None:
    pass
