"""island jobs list | submit | get | stream | cancel, and the SSE reading that
``island chat`` shares."""

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx

from island_cli.api import Api, CliError, NetworkError, error_for, path
from island_cli.options import State, global_options, page_options, pass_state
from island_cli.output import Column, block, emit, emit_json, table, text

STREAM_TIMEOUT = httpx.Timeout(15.0, read=None)  # the server sends keep-alives


def duration(ms: Any) -> str:
    return f"{ms / 1000:.1f}s" if isinstance(ms, int | float) else "-"


COLUMNS: list[Column] = [
    ("ID", lambda j: j["id"]),
    ("STATUS", lambda j: j["status"]),
    ("WORKLOAD", lambda j: j.get("workload_slug")),
    ("DURATION", lambda j: duration(j.get("duration_ms"))),
    ("CREATED", lambda j: j.get("created_at")),
]


# --- Server-Sent Events ------------------------------------------------------------------
def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """``(event name, data)`` of each event; comments (keep-alives) are skipped."""
    name, data = "message", []  # type: str, list[str]
    for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
    if data:
        yield name, "\n".join(data)


def stream(api: Api, method: str, url: str, **kwargs: Any) -> Iterator[tuple[str, str]]:
    """Open an SSE response and yield its events; API errors become CLI errors."""
    try:
        # The API client's own connection (its base URL and credentials), kept open.
        with api._http.stream(method, url, timeout=STREAM_TIMEOUT, **kwargs) as response:
            if not response.is_success:
                response.read()
                raise error_for(response)
            yield from sse_events(response.iter_lines())
    except httpx.TransportError as exc:
        raise NetworkError(f"Lost the stream from {api.base}: {exc}") from exc


class Progress:
    """A one-line progress bar on stderr, redrawn in place."""

    def __init__(self) -> None:
        self.shown = False

    def show(self, step: Any, total: Any) -> None:
        if not (isinstance(step, int) and isinstance(total, int) and total > 0):
            return
        width = max(10, min(40, shutil.get_terminal_size().columns - 20))
        done = max(0, min(width, round(width * step / total)))
        bar = "#" * done + "." * (width - done)
        click.echo(f"\r[{bar}] {step}/{total}", nl=False, err=True)
        self.shown = True

    def end(self) -> None:
        if self.shown:
            click.echo(err=True)
            self.shown = False


def waiting(status: dict[str, Any]) -> str | None:
    """The line to show for a ``status`` (event or chunk extension) of a job waiting for
    an Island, None for any other."""
    if status.get("state") != "queued":
        return None
    line = f"Waiting for an Island: {status.get('message') or 'queued'}"
    if isinstance(status.get("timeout_seconds"), int):
        line += f" (the job gives up after {status['timeout_seconds']} s in the queue)"
    return line


def follow(api: Api, job_id: str, json_mode: bool) -> None:
    """Print a job's stream: tokens as they come, progress and why it waits on stderr;
    JSON lines with --format json. Ends after done; an error event fails the command."""
    progress, printed = Progress(), False
    for _, raw in stream(api, "GET", path("jobs", job_id, "stream")):
        event = json.loads(raw)
        kind = event.get("type")
        if json_mode:
            click.echo(json.dumps(event, ensure_ascii=False))
        elif kind == "status" and (line := waiting(event)):
            progress.end()
            click.echo(line, err=True)
        elif kind == "token":
            progress.end()
            click.echo(event.get("content", ""), nl=False)
            printed = True
        elif kind == "progress":
            progress.show(event.get("step"), event.get("total"))
        elif kind == "image":
            progress.end()
            size = f"{event.get('width', '?')}x{event.get('height', '?')}"
            click.echo(f"[image {event.get('format', '?')} {size}]", err=True)
        if kind == "error":
            progress.end()
            if printed:
                click.echo()
            raise CliError(f"Job {job_id} ended with an error: {event.get('error')}")
        if kind == "done":
            progress.end()
            if printed and not json_mode:
                click.echo()
            return


# --- the commands -----------------------------------------------------------------------
@click.group()
def jobs() -> None:
    """Submit, follow and manage your compute jobs."""


@jobs.command("list")
@page_options(default_limit=20)
@global_options
@pass_state
def list_jobs(state: State, limit: int, offset: int) -> None:
    """List your recent jobs."""
    rows = state.api().get("/jobs", limit=limit, offset=offset)["data"]
    emit(state.json, rows, lambda r: table(r, COLUMNS))


def _input(value: str | None) -> dict:
    if value is None:
        return {}
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--input") from exc
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--input")
    return data


def file_field(api: Api, workload: str) -> str:
    """The input field that takes a file (base64) in the Cargo's input schema."""
    schema = api.get(path("workloads", workload))["data"].get("input_schema") or {}
    for name, spec in (schema.get("properties") or {}).items():
        if isinstance(spec, dict) and spec.get("contentEncoding") == "base64":
            return name
    raise CliError(f"The Cargo {workload} takes no file in its input")


def encoded(file: Path) -> str:
    return base64.b64encode(file.read_bytes()).decode()


@jobs.command()
@click.option("-w", "--workload", required=True, help="Cargo slug, e.g. llm-chat.")
@click.option("--input", "input_", metavar="JSON", help="The job input object.")
@click.option(
    "--file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file for the Cargo's file field (ocr-text: an image), sent base64.",
)
@click.option("--priority", type=click.IntRange(0, 100), default=0, show_default=True)
@click.option(
    "--queue-timeout",
    type=click.IntRange(1, 86400),
    metavar="SECONDS",
    help="How long the job may wait for an Island (default: the coordinator's, 300 s).",
)
@click.option("--stream", "follow_", is_flag=True, help="Print the output as it arrives.")
@global_options
@pass_state
def submit(
    state: State,
    workload: str,
    input_: str | None,
    file: Path | None,
    priority: int,
    queue_timeout: int | None,
    follow_: bool,
) -> None:
    """Submit a job; prints its ID (or its output with --stream)."""
    if input_ is None and file is None:
        raise click.UsageError("Give the job's input: --input JSON, --file PATH or both.")
    api = state.api()
    job_input = _input(input_)
    if file is not None:
        job_input[file_field(api, workload)] = encoded(file)
    body = {"workload": workload, "input": job_input, "priority": priority}
    if queue_timeout is not None:
        body["queue_timeout_seconds"] = queue_timeout
    job = api.post("/jobs", body)["data"]
    if follow_:
        if not state.json:
            click.echo(f"Job {job['id']}", err=True)
        follow(api, job["id"], state.json)
    elif state.json:
        emit_json(job)
    else:
        click.echo(job["id"])


def _details(job: dict) -> str:
    usage, queue = job.get("usage") or {}, job.get("queue")
    waits = (
        [("Waiting", queue.get("message")), ("Gives up", queue.get("expires_at"))] if queue else []
    )
    return block(
        f"Job {job['id']}",
        [
            ("Status", job["status"]),
            *waits,
            ("Workload", job.get("workload_slug")),
            ("Island", job.get("island_id")),
            ("Duration", duration(job.get("duration_ms"))),
            ("Created", job.get("created_at")),
            ("Started", job.get("started_at")),
            ("Completed", job.get("completed_at")),
            ("Tokens", text(usage.get("total_tokens"))),
            ("Credits", text(usage.get("credits_used"))),
            ("Error", job.get("error")),
            ("Output", job.get("output")),
        ],
    )


@jobs.command()
@click.argument("job_id")
@global_options
@pass_state
def get(state: State, job_id: str) -> None:
    """Show the job JOB_ID."""
    data = state.api().get(path("jobs", job_id))["data"]
    emit(state.json, data, _details)


@jobs.command("stream")
@click.argument("job_id")
@global_options
@pass_state
def stream_job(state: State, job_id: str) -> None:
    """Attach to the job JOB_ID and print its output as it arrives."""
    follow(state.api(), job_id, state.json)


@jobs.command()
@click.argument("job_id")
@global_options
@pass_state
def cancel(state: State, job_id: str) -> None:
    """Cancel the pending or running job JOB_ID."""
    data = state.api().delete(path("jobs", job_id))["data"]
    emit(state.json, data, lambda j: f"Job {j['id']} {j['status']}")
