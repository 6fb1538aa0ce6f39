"""The ``island`` command: the root group, its global options and its subcommands."""

import importlib
import importlib.util

import click

from island_cli import __version__
from island_cli.commands.account import account
from island_cli.commands.api_keys import api_keys
from island_cli.commands.auth import auth
from island_cli.commands.batch import batch
from island_cli.commands.chat import chat
from island_cli.commands.completion import completion
from island_cli.commands.hosts import hosts
from island_cli.commands.jobs import jobs
from island_cli.commands.market import market
from island_cli.commands.ocr import ocr
from island_cli.commands.sail import sail
from island_cli.commands.workloads import workloads
from island_cli.options import State, global_options

AGENT_MODULE = "island_cli.agent.command"

EPILOG = """\b
Settings: flag > environment (ARCHIPELAG_API_KEY, ARCHIPELAG_API_URL,
ARCHIPELAG_NATS_URL) > config file (~/.island/config.toml, or --config /
ISLAND_CONFIG) > defaults.

\b
Exit codes:
  0  success
  1  API error (e.g. invalid input) or other failure
  2  usage error (bad command, option or argument)
  3  authentication: missing, invalid or revoked API key, or not allowed
  4  not found
  5  rate limited (retry after the time shown)
  6  network: cannot reach the API or NATS
"""


class IslandGroup(click.Group):
    """Adds the optional ``agent`` command, imported only when it is installed and used."""

    def _agent_available(self) -> bool:
        try:
            return importlib.util.find_spec(AGENT_MODULE) is not None
        except Exception:  # a broken agent package must not break the other commands
            return False

    def list_commands(self, ctx: click.Context) -> list[str]:
        extra = ["agent"] if self._agent_available() else []
        return sorted([*super().list_commands(ctx), *extra])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name != "agent" or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        try:
            module = importlib.import_module(AGENT_MODULE)
        except Exception:  # e.g. an optional dependency of the agent is missing
            return None
        return getattr(module, "agent_command", None)


@click.group(
    cls=IslandGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(
    __version__, "-V", "--version", prog_name="island", message="%(prog)s %(version)s"
)
@click.option(
    "--config", metavar="PATH", expose_value=False, default=None,
    callback=lambda ctx, _, value: value and ctx.ensure_object(State).flags.update(config=value),
    help="Config file [env ISLAND_CONFIG; default ~/.island/config.toml].",
)  # fmt: skip
@global_options
def cli() -> None:
    """Archipelag.io from the command line: account, API keys, Cargos, Islands, market and Sail."""


for command in (auth, account, api_keys, workloads, hosts, market, sail, completion):
    cli.add_command(command)
for command in (chat, jobs, ocr):
    cli.add_command(command)
jobs.add_command(batch)
