"""island sail subscribe <subject> [--max N]: watch the NATS message fabric."""

import asyncio
import contextlib
import json
from typing import Any

import click
import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError

from island_cli.api import CliError, NetworkError
from island_cli.options import State, global_options, pass_state

CONNECT_TIMEOUT = 5


@click.group()
def sail() -> None:
    """Talk to Sail, the NATS message fabric (power users)."""


def decode(payload: bytes) -> Any:
    """The payload as JSON when it is JSON, else as text."""
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", errors="replace")


def render(seq: int, subject: str, payload: bytes, *, as_json: bool) -> str:
    data = decode(payload)
    if as_json:
        return json.dumps({"seq": seq, "subject": subject, "data": data}, ensure_ascii=False)
    shown = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"[{seq}] {subject} {shown}"


def key_options(seed_file: str | None) -> dict[str, Any]:
    """nats-py's options to sign the connection with the nkey seed in ``seed_file`` (the
    Sail admits nobody anonymously; ``user:password`` in the URL works too)."""
    if not seed_file:
        return {}
    try:
        with open(seed_file, encoding="ascii") as handle:
            return {"nkeys_seed_str": handle.read().strip()}
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"Cannot read the nkey seed file {seed_file}: {exc}") from exc


async def connect(url: str, **options: Any) -> Client:
    """Connect once, without reconnecting, reporting the cause of a failure."""
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:  # instead of nats-py's default logging
        errors.append(exc)

    try:
        return await nats.connect(
            [part.strip() for part in url.split(",") if part.strip()],  # one or a cluster's
            name="island-cli",
            connect_timeout=CONNECT_TIMEOUT,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # 0 would mean "retry forever" while connecting
            reconnect_time_wait=0.1,
            error_cb=remember,
            **options,
        )
    except (OSError, TimeoutError, NatsError) as exc:
        cause = errors[-1] if errors else exc
        raise NetworkError(f"Cannot reach NATS at {url}: {cause or type(cause).__name__}") from exc


async def _subscribe(
    url: str, subject: str, limit: int | None, as_json: bool, seed_file: str | None
) -> None:
    nc = await connect(url, **key_options(seed_file))
    try:
        sub = await nc.subscribe(subject)
        await nc.flush()  # the server has the subscription: nothing published from now is missed
        click.echo(f"Listening on {subject} (Ctrl-C to stop)", err=True)
        seq = 0
        async for msg in sub.messages:
            seq += 1
            click.echo(render(seq, msg.subject, msg.data, as_json=as_json))
            if limit and seq >= limit:
                break
    except NatsError as exc:
        raise CliError(f"NATS error: {exc or type(exc).__name__}") from exc
    finally:
        await nc.close()


@sail.command()
@click.argument("subject")
@click.option("--max", "limit", type=click.IntRange(1), help="Stop after N messages.")
@click.option(
    "--nkey",
    "seed_file",
    envvar="ARCHIPELAG_NKEY",
    metavar="FILE",
    help="Sign the connection with the nkey seed in FILE [env ARCHIPELAG_NKEY].",
)
@global_options
@pass_state
def subscribe(state: State, subject: str, limit: int | None, seed_file: str | None) -> None:
    """Print the messages published on SUBJECT (wildcards * and > allowed), one per line.

    Each line holds the message's sequence number, its subject and its payload
    (JSON on one line, or the text as is). With --format json, each line is a JSON
    object {"seq", "subject", "data"}.
    """
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop
        asyncio.run(_subscribe(state.nats_url, subject, limit, state.json, seed_file))
