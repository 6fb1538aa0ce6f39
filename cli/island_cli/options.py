"""The global options and the state every command reads its settings from.

The global options are accepted both before the command (``island --format json
account``) and after it (``island account --format json``), as the seed page shows.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import click

from island_cli.api import Api, AuthError
from island_cli.config import Setting, config_path, load_config, resolve

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class State:
    flags: dict[str, str] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return self.flags.get("format", "text")

    @property
    def json(self) -> bool:
        return self.format == "json"

    @property
    def config_path(self) -> Path:
        return config_path(self.flags.get("config"))

    @cached_property
    def file(self) -> dict[str, Any]:
        return load_config(self.config_path)

    def setting(self, name: str) -> Setting:
        return resolve(name, self.flags.get(name), self.file)

    @property
    def api_url(self) -> str:
        return self.setting("api_url").value or ""

    @property
    def nats_url(self) -> str:
        return self.setting("nats_url").value or ""

    def api(self, *, key: str | None = None, authenticated: bool = True) -> Api:
        key = key or self.setting("api_key").value
        if authenticated and not key:
            raise AuthError("Not logged in: run `island auth login` or set ARCHIPELAG_API_KEY")
        return Api(self.api_url, key)


pass_state = click.make_pass_decorator(State, ensure=True)


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None and param.name:
        ctx.ensure_object(State).flags[param.name] = value


def _option(name: str, help: str, **kwargs: Any) -> Callable[[F], F]:
    """An option that only records its value in the State, if given."""
    return click.option(
        name, help=help, default=None, expose_value=False, callback=_remember, **kwargs
    )


GLOBAL_OPTIONS = [
    _option("--api-url", "API server [env ARCHIPELAG_API_URL].", metavar="URL"),
    _option("--api-key", "API key [env ARCHIPELAG_API_KEY].", metavar="KEY"),
    _option("--nats-url", "NATS server [env ARCHIPELAG_NATS_URL].", metavar="URL"),
    _option("--format", "Output format (default text).", type=click.Choice(["text", "json"])),
]


def global_options(f: F) -> F:
    """Add --api-url, --api-key, --nats-url and --format to a command."""
    for option in reversed(GLOBAL_OPTIONS):
        f = option(f)
    return f


def page_options(default_limit: int) -> Callable[[F], F]:
    """Add --limit (1 to 100, the API's most) and --offset to a list command."""

    def add(f: F) -> F:
        f = click.option("--offset", type=click.IntRange(0), default=0, show_default=True)(f)
        limit = click.IntRange(1, 100)
        return click.option("--limit", type=limit, default=default_limit, show_default=True)(f)

    return add
