"""``mock``: a deterministic stand-in for an LLM, for tests and demos.

It is not a model and never claims to be one: the reply is a fixed sentence that says so,
followed by the words of the last user message (or the prompt). The same input always
gives the same tokens, streamed at ``mock_tokens_per_second`` (0 = as fast as possible),
cut at ``max_tokens``. Usage counts whitespace-separated words: ``prompt_tokens`` of the
whole input text, ``completion_tokens`` of what was streamed.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from . import Event, max_tokens, prompt_text

PREAMBLE = "[mock model: a deterministic stand-in, not a real LLM] You said:"


def reply_tokens(job_input: Any) -> list[str]:
    """The whole reply as tokens: each word after the first carries its leading space,
    as LLM tokens do, so that joining the tokens gives the text."""
    words = PREAMBLE.split() + _last_user_text(job_input).split()
    return [word if i == 0 else f" {word}" for i, word in enumerate(words)]


def _last_user_text(job_input: Any) -> str:
    if isinstance(job_input, dict) and isinstance(job_input.get("messages"), list):
        for message in reversed(job_input["messages"]):
            if isinstance(message, dict) and message.get("role", "user") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else ""
        return ""
    return prompt_text(job_input)


class MockRuntime:
    name = "mock"

    def __init__(self, tokens_per_second: float = 20.0):
        self.delay = 1.0 / tokens_per_second if tokens_per_second > 0 else 0.0

    async def run(self, job: dict[str, Any]) -> AsyncIterator[Event]:
        job_input = job.get("input")
        tokens = reply_tokens(job_input)[: max_tokens(job_input)]
        for token in tokens:
            # sleep(0) still yields to the loop, so "as fast as possible" stays cancellable.
            await asyncio.sleep(self.delay)
            yield {"type": "token", "content": token}
        usage = {
            "prompt_tokens": len(prompt_text(job_input).split()),
            "completion_tokens": len(tokens),
        }
        yield {"type": "done", "usage": usage}
