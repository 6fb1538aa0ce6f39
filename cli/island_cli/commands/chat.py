"""island chat <prompt>: one chat turn through the OpenAI-compatible endpoint, streamed
token by token (or waited for with --no-stream)."""

import json
from typing import Any

import click

from island_cli.api import CliError
from island_cli.commands.jobs import stream, waiting
from island_cli.options import State, global_options, pass_state
from island_cli.output import emit_json

ANSWER_TIMEOUT = 600.0  # --no-stream waits for the whole answer


def request_body(
    prompt: str, system: str | None, max_tokens: int | None, temperature: float | None, model: str
) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    body: dict[str, Any] = {"model": model, "messages": messages}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    return body


def _streamed(state: State, body: dict[str, Any]) -> dict[str, Any]:
    """Print each content delta as it arrives; returns the whole answer."""
    answer: dict[str, Any] = {"id": None, "model": body["model"], "content": ""}
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    for _, raw in stream(state.api(), "POST", "/chat/completions", json=body):
        if raw == "[DONE]":
            break
        chunk = json.loads(raw)
        if "error" in chunk:
            raise CliError(f"{chunk['error'].get('message')} [{chunk['error'].get('code')}]")
        answer["id"] = chunk.get("id", answer["id"])
        if isinstance(chunk.get("status"), dict) and (line := waiting(chunk["status"])):
            click.echo(line, err=True)  # the coordinator's extension: why the job waits
        if chunk.get("usage"):
            answer["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or {}).get("content") or ""
            answer["content"] += content
            if content and not state.json:
                click.echo(content, nl=False)
            if choice.get("finish_reason"):
                answer["finish_reason"] = choice["finish_reason"]
    if not state.json:
        click.echo()
    return answer


@click.command()
@click.argument("prompt")
@click.option("-s", "--system", help="System prompt.")
@click.option("-m", "--max-tokens", type=click.IntRange(1), help="Maximum tokens to generate.")
@click.option(
    "-t", "--temperature", type=click.FloatRange(0.0, 2.0), help="Sampling temperature (0.0-2.0)."
)
@click.option("-w", "--workload", default="llm-chat", show_default=True, help="Cargo slug.")
@click.option("--no-stream", is_flag=True, help="Wait for the full response instead.")
@global_options
@pass_state
def chat(
    state: State,
    prompt: str,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    workload: str,
    no_stream: bool,
) -> None:
    """Chat with an AI model (streaming)."""
    body = request_body(prompt, system, max_tokens, temperature, workload)
    if not no_stream:
        answer = _streamed(state, body)
        if state.json:
            emit_json(answer)
        return
    completion = state.api().request("POST", "/chat/completions", json=body, timeout=ANSWER_TIMEOUT)
    if state.json:
        emit_json(completion)
    else:
        click.echo(completion["choices"][0]["message"]["content"])
