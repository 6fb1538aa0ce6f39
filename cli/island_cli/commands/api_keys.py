"""island api-keys list | create <name> | delete <id>"""

import click

from island_cli.api import path
from island_cli.options import State, global_options, pass_state
from island_cli.output import Column, block, emit, table

COLUMNS: list[Column] = [
    ("ID", lambda k: k["id"]),
    ("NAME", lambda k: k["name"]),
    ("PREFIX", lambda k: k["prefix"]),
    ("SCOPES", lambda k: ",".join(k.get("scopes") or [])),
    ("CREATED", lambda k: k.get("created_at")),
    ("LAST USED", lambda k: k.get("last_used_at")),
]

SHOWN_ONCE = "Save your key: the full API key is only shown once, at creation. Copy it now."


@click.group("api-keys")
def api_keys() -> None:
    """Manage your API keys."""


@api_keys.command("list")
@global_options
@pass_state
def list_keys(state: State) -> None:
    """List your active API keys (only their prefixes)."""
    keys = state.api().get("/api-keys")["data"]
    emit(state.json, keys, lambda rows: table(rows, COLUMNS))


@api_keys.command()
@click.argument("name")
@global_options
@pass_state
def create(state: State, name: str) -> None:
    """Create an API key called NAME and print it (once)."""
    answer = state.api().post("/api-keys", {"name": name})
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
@global_options
@pass_state
def delete(state: State, key_id: str) -> None:
    """Revoke the API key ID (at once)."""
    revoked = state.api().delete(path("api-keys", key_id))["data"]
    emit(state.json, revoked, lambda k: f"Revoked API key {k['name']} ({k['prefix']}…)")
