"""island api-keys list | create <name> | update <id> | usage <id> | delete <id>

Managing keys needs a key with the ``keys`` scope (tick it when creating the key on
/settings); a key makes or edits keys only within its own scopes and limits."""

from collections.abc import Callable
from typing import Any

import click

from island_cli.api import path
from island_cli.options import State, global_options, pass_state
from island_cli.output import Column, block, emit, number, table


def limits(key: dict[str, Any]) -> str:
    """A key's limits in a few words: ``5/day 2 jobs/min llm-chat``."""
    parts = []
    for field, unit in (("spend_cap_day", "/day"), ("spend_cap_month", "/month"),
                        ("spend_cap_total", " in all")):  # fmt: skip
        if key.get(field) is not None:
            parts.append(f"{key[field]:g}{unit}")
    if key.get("jobs_per_minute"):
        parts.append(f"{key['jobs_per_minute']} jobs/min")
    if key.get("expires_at"):
        parts.append(f"until {key['expires_at'][:10]}")
    parts += key.get("allowed_cargos") or []
    parts += key.get("allowed_ips") or []
    return " ".join(parts)


def today(key: dict[str, Any]) -> str:
    used = (key.get("usage") or {}).get("today") or {}
    credits = (used.get("credits_spent") or 0) + (used.get("credits_held") or 0)
    return f"{used.get('jobs', 0)} jobs, {credits:.2f} cr"


COLUMNS: list[Column] = [
    ("ID", lambda k: k["id"]),
    ("NAME", lambda k: k["name"]),
    ("PREFIX", lambda k: k["prefix"]),
    ("SCOPES", lambda k: ",".join(k.get("scopes") or [])),
    ("LIMITS", limits),
    ("TODAY", today),
    ("CREATED", lambda k: k.get("created_at")),
    ("LAST USED", lambda k: k.get("last_used_at")),
]
USAGE_COLUMNS: list[Column] = [
    ("DAY", lambda d: d["day"]),
    ("REQUESTS", lambda d: d["requests"]),
    ("JOBS", lambda d: d["jobs"]),
    ("TOKENS", lambda d: d["tokens"]),
    ("CREDITS", lambda d: number(d["credits_spent"] + d["credits_held"], 2)),
]
WINDOWS = ("day", "7d", "30d", "90d", "month")

SHOWN_ONCE = "Save your key: the full API key is only shown once, at creation. Copy it now."


def limit_options(command: Callable) -> Callable:
    """The options of a key's limits (``none`` clears one when updating)."""
    options = [
        click.option("--cap-day", help="Credits per UTC day."),
        click.option("--cap-month", help="Credits per UTC month."),
        click.option("--cap-total", help="Credits in all."),
        click.option("--jobs-per-minute", help="Jobs per minute (at most the account's)."),
        click.option("--expires", help="Expiry, ISO 8601 (e.g. 2027-01-31T00:00:00Z)."),
        click.option("--cargo", "cargos", multiple=True, help="An allowed Cargo (repeat)."),
        click.option("--ip", "ips", multiple=True, help="An allowed address or CIDR (repeat)."),
        click.option("--scope", "scopes", multiple=True,
                     type=click.Choice(["read", "write", "keys"]), help="A scope (repeat)."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def limits_body(options: dict[str, Any]) -> dict[str, Any]:
    fields = {"cap_day": "spend_cap_day", "cap_month": "spend_cap_month",
              "cap_total": "spend_cap_total", "jobs_per_minute": "jobs_per_minute",
              "expires": "expires_at"}  # fmt: skip
    body: dict[str, Any] = {}
    for option, field in fields.items():
        if options.get(option) is not None:
            body[field] = None if options[option].lower() == "none" else options[option]
    for option, field in (
        ("cargos", "allowed_cargos"),
        ("ips", "allowed_ips"),
        ("scopes", "scopes"),
    ):
        if options.get(option):
            body[field] = [] if list(options[option]) == ["none"] else list(options[option])
    return body


@click.group("api-keys")
def api_keys() -> None:
    """Manage your API keys (needs a key with the keys scope)."""


@api_keys.command("list")
@global_options
@pass_state
def list_keys(state: State) -> None:
    """List your active API keys (only their prefixes), their limits and today's usage."""
    keys = state.api().get("/api-keys")["data"]
    emit(state.json, keys, lambda rows: table(rows, COLUMNS))


@api_keys.command()
@click.argument("name")
@limit_options
@global_options
@pass_state
def create(state: State, name: str, **options: Any) -> None:
    """Create an API key called NAME and print it (once)."""
    answer = state.api().post("/api-keys", {"name": name, **limits_body(options)})
    created = {**answer["data"], "key": answer["key"]}
    if state.json:
        emit(True, created, str)
        click.echo(SHOWN_ONCE, err=True)
        return
    details = [("ID", created["id"]), ("Name", created["name"]), ("Key", created["key"])]
    click.echo(block("API key created", details))
    click.echo()
    click.secho(SHOWN_ONCE, fg="yellow", bold=True)


@api_keys.command()
@click.argument("key_id", metavar="ID")
@click.option("--name", help="A new name.")
@limit_options
@global_options
@pass_state
def update(state: State, key_id: str, name: str | None, **options: Any) -> None:
    """Change the name, scopes or limits of the API key ID (``none`` removes a limit)."""
    body = limits_body(options) | ({"name": name} if name else {})
    if not body:
        raise click.UsageError("Nothing to change: give --name, --scope or a limit.")
    key = state.api().patch(path("api-keys", key_id), body)["data"]
    emit(state.json, key, lambda k: f"Updated API key {k['name']}: {limits(k) or 'no limits'}")


@api_keys.command()
@click.argument("key_id", metavar="ID")
@click.option("--window", type=click.Choice(WINDOWS), default="30d", show_default=True,
              help="day: today (UTC); 7d, 30d, 90d: that many days; month: this month.")  # fmt: skip
@global_options
@pass_state
def usage(state: State, key_id: str, window: str) -> None:
    """The usage of the API key ID per day: requests, jobs, tokens, credits."""
    data = state.api().get(path("api-keys", key_id, "usage"), window=window)["data"]

    def render(used: dict[str, Any]) -> str:
        totals = {"day": "TOTAL", **used["totals"]}
        return table([*used["days"], totals], USAGE_COLUMNS)

    emit(state.json, data, render)


@api_keys.command()
@click.argument("key_id", metavar="ID")
@global_options
@pass_state
def delete(state: State, key_id: str) -> None:
    """Revoke the API key ID (at once)."""
    state.api().delete(path("api-keys", key_id))
    emit(state.json, {"id": key_id, "revoked": True}, lambda k: f"Revoked API key {k['id']}")
