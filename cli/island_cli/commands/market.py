"""island market rates [slug] | history <slug> (the Compute Exchange)"""

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import click

from island_cli.api import path
from island_cli.options import State, global_options, pass_state
from island_cli.output import Column, emit_json, table, text

WINDOWS = ["1h", "24h", "7d", "30d"]


def price(value: Any) -> str:
    """Four decimals as on the seed page, from the API's decimal string (no float)."""
    try:
        return str(Decimal(str(value)).quantize(Decimal("0.0001")))
    except (InvalidOperation, ValueError):
        return text(value)


def when(value: Any) -> str:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return text(value)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}"


PRICES: list[Column] = [
    ("AVG", lambda r: price(r.get("avg_price"))),
    ("MIN", lambda r: price(r.get("min_price"))),
    ("MAX", lambda r: price(r.get("max_price"))),
    ("HOSTS", lambda r: r.get("num_hosts")),
]
RATES: list[Column] = [("CARGO", lambda r: r["workload_slug"]), *PRICES]
HISTORY: list[Column] = [("TIME (UTC)", lambda r: when(r.get("timestamp"))), *PRICES]


def _emit_rows(state: State, rows: list[dict], columns: list[Column], empty: str) -> None:
    if state.json:
        emit_json(rows)
        return
    click.echo(table(rows, columns))
    if not rows:
        click.echo(empty)


@click.group()
def market() -> None:
    """Prices on the Compute Exchange."""


@market.command()
@click.argument("slug", required=False)
@global_options
@pass_state
def rates(state: State, slug: str | None) -> None:
    """Show the current market rate of every Cargo, or of the Cargo SLUG."""
    api = state.api(authenticated=False)
    if slug:
        rows = [api.get(path("market", "rates", slug))["data"]]
    else:
        rows = api.get("/market/rates")["data"]
    _emit_rows(state, rows, RATES, "(no market rates yet)")
    if not state.json and any(row.get("surge") for row in rows):
        click.echo("Surge pricing is on: rates are 1.25 times the asks while the network is busy.")


@market.command()
@click.argument("slug")
@click.option(
    "--window", type=click.Choice(WINDOWS), default="24h", show_default=True,
    help="How far back to look.",
)  # fmt: skip
@global_options
@pass_state
def history(state: State, slug: str, window: str) -> None:
    """Show the price history of the Cargo SLUG."""
    page = state.api(authenticated=False).get(path("market", "history", slug), window=window)
    _emit_rows(state, page["data"], HISTORY, f"(no price history in the last {window})")
