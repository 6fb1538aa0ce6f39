"""island hosts list | get <id> (Islands)"""

import json
from typing import Any

import click

from island_cli.api import path
from island_cli.options import State, global_options, page_options, pass_state
from island_cli.output import Column, block, emit, emit_page, number

COLUMNS: list[Column] = [
    ("ID", lambda h: h["id"]),
    ("NAME", lambda h: h.get("name")),
    ("STATUS", lambda h: h.get("status")),
    ("REGION", lambda h: h.get("region")),
    ("KARMA", lambda h: number(h.get("karma_score"), 1)),
]


@click.group()
def hosts() -> None:
    """View the Islands (hosts) of the network."""


@hosts.command("list")
@click.option("--status", type=click.Choice(["online", "offline"]), help="Only these Islands.")
@click.option("--all", "show_all", is_flag=True, help="Offline Islands too (default: online).")
@page_options(default_limit=100)
@global_options
@pass_state
def list_hosts(state: State, status: str | None, show_all: bool, limit: int, offset: int) -> None:
    """List online Islands, highest karma first (--all: every Island)."""
    status = status or (None if show_all else "online")
    params = {"limit": limit, "offset": offset, **({"status": status} if status else {})}
    emit_page(state.json, state.api().get("/hosts", **params), COLUMNS)


def _details(h: dict[str, Any]) -> str:
    capabilities = h.get("capabilities")
    return block(
        f"Island {h['id']}",
        [
            ("Name", h.get("name")),
            ("Status", h.get("status")),
            ("Region", h.get("region")),
            ("Karma", number(h.get("karma_score"), 1)),
            ("Last heartbeat", h.get("last_heartbeat_at")),
            ("Capabilities", json.dumps(capabilities) if capabilities else None),
        ],
    )


@hosts.command()
@click.argument("host_id", metavar="ID")
@global_options
@pass_state
def get(state: State, host_id: str) -> None:
    """Show the Island ID."""
    data = state.api().get(path("hosts", host_id))["data"]
    emit(state.json, data, _details)
