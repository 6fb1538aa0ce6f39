"""Runtimes run one job and yield its events in the workload-process format of the
protocol: ``{"type": "token", "content"}``, ``progress {step, total}``, ``image {data,
format, width, height}``, ``status {message}``, ``done {usage}``. A failure raises
JobFailed with the message the coordinator will see."""

from collections.abc import AsyncIterator
from typing import Any, Protocol

Event = dict[str, Any]


class JobFailed(Exception):
    """The job cannot be completed; ``str(exc)`` is the status ``error``."""


class Runtime(Protocol):
    name: str

    def run(self, job: dict[str, Any]) -> AsyncIterator[Event]: ...


def prompt_text(job_input: Any) -> str:
    """The text an LLM job is about: ``messages`` (chat), ``prompt``, or a bare string."""
    if isinstance(job_input, str):
        return job_input
    if not isinstance(job_input, dict):
        return ""
    messages = job_input.get("messages")
    if isinstance(messages, list):
        parts = [m.get("content") for m in messages if isinstance(m, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    prompt = job_input.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def max_tokens(job_input: Any, default: int = 256) -> int:
    value = job_input.get("max_tokens") if isinstance(job_input, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return default
