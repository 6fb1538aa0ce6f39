"""island jobs batch --workload W --inputs FILE.jsonl [--wait]"""

import json
import time
from typing import Any

import click

from island_cli.api import Api, CliError, path
from island_cli.commands.jobs import Progress
from island_cli.options import State, global_options, pass_state
from island_cli.output import emit_json

MAX_INPUTS = 100
POLL_SECONDS = 1.0
ENDED = ("succeeded", "failed", "cancelled")


def read_inputs(source: Any) -> list[dict]:
    """One JSON object per non-blank line."""
    inputs = []
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise click.BadParameter(
                f"line {number}: not valid JSON: {exc}", param_hint="--inputs"
            ) from exc
        if not isinstance(value, dict):
            raise click.BadParameter(f"line {number}: must be a JSON object", param_hint="--inputs")
        inputs.append(value)
    if not 1 <= len(inputs) <= MAX_INPUTS:
        raise click.BadParameter(
            f"needs 1 to {MAX_INPUTS} inputs, found {len(inputs)}", param_hint="--inputs"
        )
    return inputs


def wait(api: Api, batch_id: str, json_mode: bool) -> dict:
    """Poll the batch until it ends, drawing its progress (children ended of all) on stderr."""
    progress = Progress()
    while True:
        status = api.get(path("jobs", batch_id, "batch-status"))
        counts = status.get("child_states") or {}
        ended = sum(counts.get(state, 0) for state in ENDED)
        if not json_mode:
            progress.show(ended, status.get("chunk_count"))
        if status.get("parent_state") in ENDED:
            progress.end()
            return status
        time.sleep(POLL_SECONDS)


@click.command("batch")
@click.option("-w", "--workload", required=True, help="Cargo slug, e.g. llm-chat.")
@click.option(
    "--inputs", "source", required=True, type=click.File("r"), metavar="FILE.jsonl",
    help="One job input (a JSON object) per line; - reads standard input.",
)  # fmt: skip
@click.option(
    "--merge", type=click.Choice(["concat", "flatten"]), default="concat", show_default=True
)
@click.option(
    "--fail-mode", type=click.Choice(["best_effort", "fail_fast"]), default="best_effort",
    show_default=True,
)  # fmt: skip
@click.option("--max-parallelism", type=click.IntRange(1, MAX_INPUTS), help="Children at once.")
@click.option("--wait", "wait_", is_flag=True, help="Show progress, then the merged output.")
@global_options
@pass_state
def batch(
    state: State,
    workload: str,
    source: Any,
    merge: str,
    fail_mode: str,
    max_parallelism: int | None,
    wait_: bool,
) -> None:
    """Run one job per input line as a batch; prints its ID (with --wait: its output)."""
    body: dict[str, Any] = {"workload": workload, "inputs": read_inputs(source),
                            "merge_strategy": merge, "fail_mode": fail_mode}  # fmt: skip
    if max_parallelism is not None:
        body["max_parallelism"] = max_parallelism
    api = state.api()
    created = api.post("/jobs/batch", body)
    if not wait_:
        if state.json:
            emit_json(created)
        else:
            click.echo(created["id"])
        return
    if not state.json:
        click.echo(f"Batch {created['id']}: {len(body['inputs'])} jobs", err=True)
    status = wait(api, created["id"], state.json)
    parent = api.get(path("jobs", created["id"]))["data"]
    if state.json:
        emit_json({**status, "output": parent["output"], "error": parent["error"]})
    if status["parent_state"] != "succeeded":
        raise CliError(f"Batch {created['id']} {status['parent_state']}: {parent['error']}")
    if not state.json:
        failed = status["child_states"].get("failed", 0)
        if failed:
            click.echo(f"{failed} of {status['chunk_count']} jobs failed", err=True)
        click.echo(parent["output"])
