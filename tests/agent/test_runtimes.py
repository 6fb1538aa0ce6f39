"""The runtimes on their own: mock and wasm (onnx: test_onnx.py; llmcpp, through jobs:
test_llmcpp.py)."""

import asyncio
import hashlib
import time

import pytest
import wasmtime
from island_cli.agent.runtimes import JobFailed
from island_cli.agent.runtimes.mock import PREAMBLE, MockRuntime
from island_cli.agent.runtimes.wasm import WasmRuntime
from island_cli.agent.wire import side_message


async def collect(runtime, job_input, **fields):
    return [event async for event in runtime.run({"input": job_input, **fields})]


def text_of(events) -> str:
    return "".join(e["content"] for e in events if e["type"] == "token")


async def test_the_mock_runtime_gives_the_same_reply_to_the_same_input():
    chat = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "Tell me about islands"},
        ]
    }

    first = await collect(MockRuntime(0), chat)
    second = await collect(MockRuntime(0), chat)

    assert first == second
    assert text_of(first) == f"{PREAMBLE} Tell me about islands"
    assert first[-1] == {
        "type": "done",
        "usage": {"prompt_tokens": 6, "completion_tokens": len(first) - 1},
    }


async def test_the_mock_runtime_says_it_is_not_a_real_model_and_honours_max_tokens():
    events = await collect(
        MockRuntime(0),
        {
            "prompt": "one two three four five six seven eight nine ten eleven twelve",
            "max_tokens": 4,
        },
    )

    tokens = [e for e in events if e["type"] == "token"]
    assert len(tokens) == 4
    assert "not a real LLM" in PREAMBLE
    assert events[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 4}


async def test_the_mock_runtime_streams_at_its_configured_rate():
    start = time.monotonic()
    await collect(MockRuntime(50), {"prompt": "a", "max_tokens": 10})

    assert 0.18 <= time.monotonic() - start < 2


@pytest.fixture
def wasm(tmp_path) -> WasmRuntime:
    """The wasm runtime with generous limits."""
    return WasmRuntime(fuel=10**9, memory_mb=16, cache_dir=tmp_path)


async def test_the_shipped_wasm_utility_counts_bytes_words_and_lines(wasm):
    events = await collect(
        wasm, {"text": "The quick  brown\tfox\njumps\n\n"}, wasm_url="builtin:wordcount"
    )

    assert text_of(events) == '{"bytes":28,"words":5,"lines":3}\n'
    assert events[-1] == {"type": "done"}


async def test_wasm_input_that_is_not_text_goes_in_as_json(wasm):
    events = await collect(wasm, {"numbers": [1, 2]})

    assert text_of(events) == '{"bytes":19,"words":3,"lines":0}\n'  # {"numbers": [1, 2]}


async def test_a_wasm_module_out_of_fuel_fails_with_a_clear_error(tmp_path):
    runtime = WasmRuntime(fuel=5_000, memory_mb=16, cache_dir=tmp_path)

    with pytest.raises(JobFailed, match=r"WASM fuel exhausted \(limit 5000\)"):
        await collect(runtime, "word " * 5_000)


# A WASI command that loops until its fuel runs out (seconds with this much).
ENDLESS = '(module (memory (export "memory") 1) (func (export "_start") (loop $again (br $again))))'


async def test_a_wasm_module_is_interrupted_when_its_job_is_cancelled(tmp_path):
    module = wasmtime.wat2wasm(ENDLESS)
    digest = hashlib.sha256(module).hexdigest()
    (tmp_path / f"{digest}.wasm").write_bytes(module)  # in the cache: nothing downloaded
    runtime = WasmRuntime(fuel=10**10, memory_mb=16, cache_dir=tmp_path)
    endless = {"wasm_url": "https://cargo.invalid/endless.wasm", "wasm_hash": digest}
    task = asyncio.ensure_future(collect(runtime, "x", **endless))
    await asyncio.sleep(0.3)  # compiled and running by now
    assert not task.done()

    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5


async def test_an_unknown_builtin_wasm_module_fails_clearly(wasm):
    with pytest.raises(JobFailed, match=r"Unknown builtin WASM module: \.\./etc"):
        await collect(wasm, "x", wasm_url="builtin:../etc")


def test_progress_and_image_events_become_protocol_messages_without_nulls():
    assert side_message("j1", {"type": "progress", "step": 3, "total": 20}) == {
        "job_id": "j1",
        "step": 3,
        "total": 20,
    }
    assert side_message(
        "j1", {"type": "image", "data": "iVBO", "format": "png", "width": 8, "height": 8}
    ) == {
        "job_id": "j1",
        "image_data": "iVBO",
        "format": "png",
        "width": 8,
        "height": 8,
    }
