"""island auth login | status | logout"""

from typing import Any

import click

from island_cli.config import save_config
from island_cli.options import State, global_options, pass_state
from island_cli.output import block, emit, number


@click.group()
def auth() -> None:
    """Save, check or remove your API key."""


def _account(state: State, key: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = state.api(key=key).get("/account")["data"]
    return data


@auth.command()
@click.option("--key", metavar="KEY", help="The API key (prompted for, hidden, if omitted).")
@global_options
@pass_state
def login(state: State, key: str | None) -> None:
    """Check an API key against the server and save it to the config file.

    An --api-url or --nats-url given here is saved too.
    """
    key = key or state.flags.get("api_key") or click.prompt("API key", hide_input=True, err=True)
    key = key.strip()
    if not key:
        raise click.UsageError("The API key is empty")
    account = _account(state, key)
    config = dict(state.file)
    config["api_key"] = key
    for name in ("api_url", "nats_url"):
        if name in state.flags:
            config[name] = state.flags[name]
    save_config(state.config_path, config)
    result = {"email": account["email"], "api_url": state.api_url, "config": str(state.config_path)}
    emit(state.json, result, lambda r: f"Logged in as {r['email']} (key saved to {r['config']})")


@auth.command()
@global_options
@pass_state
def status(state: State) -> None:
    """Show the account the API key belongs to and its credit balance."""
    account = _account(state)
    source = state.setting("api_key").source
    result = {
        "email": account["email"],
        "credits": account["credits"],
        "api_url": state.api_url,
        "key_source": source,
    }
    emit(
        state.json,
        result,
        lambda r: block(
            f"Logged in as {r['email']}",
            [("Credits", number(r["credits"], 2)), ("API", r["api_url"]), ("Key from", source)],
        ),
    )


@auth.command()
@global_options
@pass_state
def logout(state: State) -> None:
    """Remove the saved API key (other settings in the file stay)."""
    config = dict(state.file)
    was_saved = config.pop("api_key", None) is not None
    if was_saved:
        save_config(state.config_path, config)
    message = "Logged out" if was_saved else "No saved API key"
    emit(state.json, {"logged_out": was_saved}, lambda _: message)
