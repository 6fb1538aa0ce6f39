"""island ocr <image>: the text of an image, read by an Island (the ocr-text Cargo)."""

import json
from pathlib import Path
from typing import Any

import click

from island_cli.api import Api, CliError, path
from island_cli.commands.jobs import encoded, stream, waiting
from island_cli.options import State, global_options, pass_state
from island_cli.output import emit_json


def wait_for_end(api: Api, job_id: str) -> None:
    """Follow the job's stream until it ends, saying on stderr why it waits."""
    for _, raw in stream(api, "GET", path("jobs", job_id, "stream")):
        event = json.loads(raw)
        if event.get("type") == "status" and (line := waiting(event)):
            click.echo(line, err=True)
        if event.get("type") in ("done", "error"):
            return


def as_json(job: dict[str, Any]) -> dict[str, Any]:
    result = job.get("result") or {}
    return {
        "job_id": job["id"],
        "text": job.get("output") or "",
        "width": result.get("width"),
        "height": result.get("height"),
        "lines": result.get("lines") or [],
        "usage": job.get("usage"),
    }


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-w", "--workload", default="ocr-text", show_default=True, help="Cargo slug.")
@global_options
@pass_state
def ocr(state: State, image: Path, workload: str) -> None:
    """Read the text in IMAGE (PNG, JPEG or WebP); --format json adds each line's box
    and confidence."""
    api = state.api()
    body = {"workload": workload, "input": {"image": encoded(image)}}
    job = api.post("/jobs", body)["data"]
    wait_for_end(api, job["id"])
    job = api.get(path("jobs", job["id"]))["data"]
    if job["status"] != "completed":
        raise CliError(f"Job {job['id']} {job['status']}: {job.get('error') or 'no text'}")
    if state.json:
        emit_json(as_json(job))
    elif job.get("output"):
        click.echo(job["output"])
    else:
        click.echo("No text found in the image.", err=True)
