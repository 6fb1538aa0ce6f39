"""island workloads list | get <slug> (Cargos)"""

from typing import Any

import click

from island_cli.api import path
from island_cli.options import State, global_options, page_options, pass_state
from island_cli.output import Column, block, emit, emit_page, number

COLUMNS: list[Column] = [
    ("SLUG", lambda w: w["slug"]),
    ("NAME", lambda w: w["name"]),
    ("RUNTIME", lambda w: w.get("runtime_type")),
    ("PRICE", lambda w: number(w.get("price_per_job"), 4)),
    ("ENABLED", lambda w: bool(w.get("is_enabled"))),
]


@click.group()
def workloads() -> None:
    """Browse the Cargos (workloads) of the network."""


@workloads.command("list")
@page_options(default_limit=100)
@global_options
@pass_state
def list_workloads(state: State, limit: int, offset: int) -> None:
    """List the available Cargos."""
    page = state.api(authenticated=False).get("/workloads", limit=limit, offset=offset)
    emit_page(state.json, page, COLUMNS)


def _details(w: dict[str, Any]) -> str:
    return block(
        f"Cargo {w['slug']}",
        [
            ("Name", w["name"]),
            ("ID", w.get("id")),
            ("Runtime", w.get("runtime_type")),
            ("Price", number(w.get("price_per_job"), 4)),
            ("VRAM (MB)", w.get("required_vram_mb")),
            ("RAM (MB)", w.get("required_ram_mb")),
            ("Enabled", bool(w.get("is_enabled"))),
            ("Description", w.get("description")),
        ],
    )


@workloads.command()
@click.argument("slug")
@global_options
@pass_state
def get(state: State, slug: str) -> None:
    """Show the Cargo SLUG."""
    data = state.api(authenticated=False).get(path("workloads", slug))["data"]
    emit(state.json, data, _details)
