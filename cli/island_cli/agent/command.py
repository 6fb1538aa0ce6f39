"""``island agent``: the click command (registered by the CLI's main module)."""

import asyncio
import logging
from pathlib import Path

import click

from . import config as agent_config
from .config import ConfigError
from .runner import run


@click.command("agent")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="ISLAND_CONFIG",
    help="Config file (default: $ISLAND_CONFIG, else ~/.island/config.toml).",
)
@click.option(
    "--simulate",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Run N light simulated Islands (mock runtime) in this process.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log connection and job details.")
def agent_command(config_path: Path | None, simulate: int | None, verbose: bool) -> None:
    """Run this computer as an Island: register, pair, send heartbeats, run jobs."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = agent_config.load(config_path)
        code = asyncio.run(run(config, simulate=simulate or 0))
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from None
    raise SystemExit(code)
