"""Fixtures for the `island` CLI tests: an empty home directory and a runner that calls
the CLI in-process against the live test server."""

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from island_cli.main import cli

from portal import services

OUTSIDE_SETTINGS = (
    "ARCHIPELAG_API_KEY",
    "ARCHIPELAG_API_URL",
    "ARCHIPELAG_NATS_URL",
    "ISLAND_CONFIG",
)

Run = Callable[..., Result]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty home directory for the CLI (its config lives in home/.island)."""
    return tmp_path


@pytest.fixture
def config_file(home: Path) -> Path:
    return home / ".island" / "config.toml"


@pytest.fixture
def run(home: Path) -> Run:
    """Invoke `island ARGS...` with HOME=home and no ARCHIPELAG_* variables unless given."""

    def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        environment: dict[str, str | None] = dict.fromkeys(OUTSIDE_SETTINGS)
        environment |= {"HOME": str(home), **(env or {})}
        return CliRunner().invoke(cli, list(args), env=environment, input=input, prog_name="island")

    return invoke


@pytest.fixture
def key(live) -> str:
    """A full API key (read, write, keys) of a new account (created after `live`, in the
    transactional DB)."""
    user = services.sign_up(email="ada@example.com", password="correct horse battery")
    return services.create_api_key(user=user, name="laptop", scopes=["read", "write", "keys"])[1]


@pytest.fixture
def closed_port() -> int:
    """A local port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
