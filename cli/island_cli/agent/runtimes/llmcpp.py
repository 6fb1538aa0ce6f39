"""``llmcpp``: a real LLM through llama-cpp-python and a local GGUF file.

An optional extra (``pip install 'island-cli[llmcpp]'``), imported only when this runtime
is chosen. The model is loaded once, on the first job, and generates in a worker thread;
tokens reach the event loop through a queue, and a cancel stops generation at the next
token. Usage: ``prompt_tokens`` from the model's tokenizer, ``completion_tokens`` the
number of streamed pieces (one per generated token).
"""

import asyncio
import importlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..config import ConfigError
from . import Event, JobFailed, max_tokens, prompt_text

_END = object()


def _messages(job_input: Any) -> list[dict[str, str]]:
    if isinstance(job_input, dict) and isinstance(job_input.get("messages"), list):
        return [
            {"role": str(m.get("role", "user")), "content": str(m.get("content", ""))}
            for m in job_input["messages"]
            if isinstance(m, dict)
        ]
    return [{"role": "user", "content": prompt_text(job_input)}]


class LlmCppRuntime:
    name = "llmcpp"

    def __init__(self, *, model_path: Path, context_size: int = 4096):
        try:
            self._llama_cpp = importlib.import_module("llama_cpp")
        except ImportError:
            raise ConfigError(
                "runtime llmcpp needs llama-cpp-python: pip install 'island-cli[llmcpp]'"
            ) from None
        if not model_path.is_file():
            raise ConfigError(f"[agent] model_path: GGUF file not found: {model_path}")
        self.model_path = model_path
        self.context_size = context_size
        self._model: Any = None
        self._lock = threading.Lock()  # one generation at a time: a Llama is not thread-safe

    def _load(self) -> Any:
        if self._model is None:
            self._model = self._llama_cpp.Llama(
                model_path=str(self.model_path), n_ctx=self.context_size, verbose=False
            )
        return self._model

    async def run(self, job: dict[str, Any]) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        job_input = job.get("input")
        temperature = job_input.get("temperature", 0.7) if isinstance(job_input, dict) else 0.7

        def generate() -> None:
            try:
                with self._lock:
                    model = self._load()
                    prompt_tokens = len(model.tokenize(prompt_text(job_input).encode()))
                    chunks = model.create_chat_completion(
                        messages=_messages(job_input),
                        max_tokens=max_tokens(job_input),
                        temperature=float(temperature),
                        stream=True,
                    )
                    completion_tokens = 0
                    for chunk in chunks:
                        if stop.is_set():
                            break
                        content = chunk["choices"][0].get("delta", {}).get("content")
                        if content:
                            completion_tokens += 1
                            loop.call_soon_threadsafe(queue.put_nowait, content)
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
                loop.call_soon_threadsafe(queue.put_nowait, usage)
            except Exception as exc:
                loop.call_soon_threadsafe(queue.put_nowait, JobFailed(f"llama.cpp failed: {exc}"))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        worker = asyncio.ensure_future(asyncio.to_thread(generate))
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, JobFailed):
                    raise item
                if isinstance(item, dict):
                    yield {"type": "done", "usage": item}
                else:
                    yield {"type": "token", "content": item}
        finally:
            stop.set()
            await asyncio.shield(worker)
