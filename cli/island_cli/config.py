"""The config file (~/.island/config.toml) and where each setting comes from.

Precedence for every setting: command-line flag > environment variable > config file >
built-in default. The URLs may also come from the agent's ``[coordinator]`` table.
The file may hold other tables (``[host]``, ``[coordinator]``,
``[pricing]`` for the agent); saving keeps them.
"""

import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import tomli_w

DEFAULT_API_URL = "https://api.archipelag.io"
DEFAULT_NATS_URL = "nats://sail.archipelag.io:4222"
CONFIG_ENV = "ISLAND_CONFIG"

# setting name -> (environment variable, default)
SETTINGS: dict[str, tuple[str, str | None]] = {
    "api_key": ("ARCHIPELAG_API_KEY", None),
    "api_url": ("ARCHIPELAG_API_URL", DEFAULT_API_URL),
    "nats_url": ("ARCHIPELAG_NATS_URL", DEFAULT_NATS_URL),
}


@dataclass(frozen=True)
class Setting:
    value: str | None
    source: str  # "flag", "environment", "config file" or "default"


def config_path(override: str | None = None) -> Path:
    """--config, else $ISLAND_CONFIG, else ~/.island/config.toml (``~`` is $HOME)."""
    chosen = override or os.environ.get(CONFIG_ENV)
    return Path(chosen).expanduser() if chosen else Path.home() / ".island" / "config.toml"


def load_config(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"Cannot read config file {path}: {exc}") from exc


def save_config(path: Path, data: dict[str, Any]) -> None:
    """Write atomically, readable by the owner only (it holds an API key)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".toml")
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp creates the file with mode 600
            tomli_w.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resolve(name: str, flag: str | None, file: dict[str, Any]) -> Setting:
    env_var, default = SETTINGS[name]
    if flag:
        return Setting(flag, "flag")
    if os.environ.get(env_var):
        return Setting(os.environ[env_var], "environment")
    coordinator = file.get("coordinator")  # the agent's table; the top level wins
    for table in (file, coordinator if isinstance(coordinator, dict) else {}):
        if isinstance(table.get(name), str) and table[name]:
            return Setting(table[name], "config file")
    return Setting(default, "default")
