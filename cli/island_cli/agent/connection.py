"""The NATS connection of the protocol: client name ``island-<first 8 of host_id>``, a
ping every 10 s, and reconnection forever with a backoff of 1 s doubling to 30 s, with
jitter, for the first connection as well as later ones."""

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client, Server

logger = logging.getLogger(__name__)

BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0


class _Client(nats.NATS):
    """nats-py closes a connection for good when the server says that its credentials
    expired (-ERR 'User Authentication Expired'; nats-io/nats.py#1019), where the Go
    client reconnects and authenticates anew. An Island's admission lasts an hour
    (README, "The Sail's security"): reconnect, as for a stale connection."""

    async def _process_err(self, err_msg: str) -> None:
        if "authentication expired" in err_msg.lower():
            await self._process_op_err(nats.errors.StaleConnectionError())
            return
        await super()._process_err(err_msg)


def backoff_delay(attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait before attempt ``attempt + 1``: base doubled per failed attempt,
    capped, with "equal jitter" (between half and all of it) so that a fleet of Islands
    does not reconnect in lockstep after an outage."""
    delay = min(cap, base * 2 ** min(attempt, 16))
    return delay / 2 + random.uniform(0, delay / 2)


def _pick_server(servers: list[Server], _info: dict[str, Any]) -> tuple[Server | None, float]:
    server = min(servers, key=lambda s: s.reconnects)
    return server, backoff_delay(server.reconnects)


def servers(url: str) -> list[str]:
    """The server URLs of ``url``: one, or a cluster's, comma-separated; the client
    reconnects to whichever of them answers."""
    return [part.strip() for part in url.split(",") if part.strip()]


def redact(url: str) -> str:
    """The URL (or URLs, comma-separated) without its password, for messages."""
    if "," in url:
        return ",".join(redact(part) for part in servers(url))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def connect(
    url: str,
    *,
    name: str,
    ping_interval: float = 10.0,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    on_attempt_failed: Callable[[Exception, float], None] | None = None,
    **options: Any,
) -> Client:
    """Connect, retrying forever with backoff; later disconnections are retried by
    nats-py with the same backoff (``reconnect_to_server_handler``)."""

    connected = False
    last_error: Exception | None = None

    async def error_cb(exc: Exception) -> None:
        nonlocal last_error
        last_error = exc
        if connected:
            logger.warning("NATS: %s", exc or type(exc).__name__)

    async def disconnected_cb() -> None:
        if connected and not (client.is_closed or client.is_draining):
            logger.warning("NATS: disconnected from %s", redact(url))

    async def reconnected_cb() -> None:
        logger.info("NATS: reconnected")
        if on_reconnect is not None:
            await on_reconnect()

    attempt = 0
    while True:
        client = _Client()
        try:
            # nats-py retries a first connection forever at a fixed interval; with one retry
            # allowed here, the loop below applies the protocol's backoff instead.
            await client.connect(
                servers(url),
                name=name,
                ping_interval=max(1, round(ping_interval)),
                max_outstanding_pings=3,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                reconnect_to_server_handler=_pick_server,
                error_cb=error_cb,
                disconnected_cb=disconnected_cb,
                reconnected_cb=reconnected_cb,
                connect_timeout=5,
                **options,  # the Island's identity (identity.Identity.connect_options)
            )
        except Exception as exc:
            with contextlib.suppress(Exception):
                await client.close()
            delay = backoff_delay(attempt)
            attempt += 1
            if on_attempt_failed is not None:
                on_attempt_failed(last_error or exc, delay)
            await asyncio.sleep(delay)
            continue
        client.options["max_reconnect_attempts"] = -1  # from now on, reconnect forever
        connected = True
        return client
