"""Preload recommendations (island-protocol.md, "Island defaults worth knowing").

With ``coordinator.api_url`` set, the Island asks
``GET /api/v1/island/recommendations?host_id=…`` every ``recommendations_interval``
seconds (15 minutes by default) and prints what it would preload, one line per
recommendation, highest demand first as the coordinator sorted them. It downloads
nothing: the mock and WASM runtimes have nothing to fetch ahead of time.

A failed poll (coordinator unreachable, the Island not registered yet, a bad answer) is
logged and tried again after at most ``RETRY_SECONDS``.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx

logger = logging.getLogger(__name__)

PATH = "/api/v1/island/recommendations"
RETRY_SECONDS = 30.0
TIMEOUT = 10.0


def recommendations_url(api_url: str) -> str:
    """The endpoint under ``api_url``, given with or without its ``/api/v1`` suffix."""
    return api_url.rstrip("/").removesuffix("/api/v1") + PATH


def describe(item: dict[str, Any]) -> str:
    """One recommendation as the line the agent prints."""
    line = f"Preload recommendation: {item.get('workload_slug')} ({item.get('runtime_type')})"
    line += f" · demand {item.get('demand_score')} ({item.get('queued_demand')} queued)"
    if item.get("estimated_earnings_per_job") is not None:
        line += f" · ~{item['estimated_earnings_per_job']} credits per job"
    if item.get("model_url"):
        line += f" · model {item['model_url']}"
    return line


async def fetch(client: httpx.AsyncClient, url: str, host_id: str) -> list[dict[str, Any]] | None:
    """The recommendations, or None when the poll failed (logged)."""
    try:
        response = await client.get(url, params={"host_id": host_id})
    except httpx.HTTPError as exc:
        logger.info("recommendations: %s", exc or type(exc).__name__)
        return None
    if response.status_code == 404:
        logger.info("recommendations: the coordinator does not know this Island yet")
        return None
    if response.status_code != 200:
        logger.warning("recommendations: HTTP %s", response.status_code)
        return None
    try:
        items = response.json().get("recommendations")
    except (ValueError, AttributeError):
        items = None
    if not isinstance(items, list):
        logger.warning("recommendations: unexpected answer %.200r", response.text)
        return None
    return [item for item in items if isinstance(item, dict)]


async def poll(*, api_url: str, host_id: str, interval: float, say: Callable[[str], None]) -> None:
    """Poll forever (until cancelled): at once, then every ``interval`` seconds."""
    url = recommendations_url(api_url)
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        while True:
            items = await fetch(client, url, host_id)
            if items is not None:
                for item in items:
                    say(describe(item))
                if not items:
                    logger.info("recommendations: nothing to preload")
            await asyncio.sleep(interval if items is not None else min(interval, RETRY_SECONDS))
