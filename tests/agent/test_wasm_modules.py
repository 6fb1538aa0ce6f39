"""Where a WASM Cargo's module may come from: a remote module runs only with the Cargo's
sha256 (``wasm_hash``), and only if what the URL holds has that hash."""

import hashlib

import pytest
import wasmtime
from island_cli.agent.runtimes import JobFailed
from island_cli.agent.runtimes import wasm as wasm_runtime
from island_cli.agent.runtimes.wasm import WasmRuntime

MODULE = wasmtime.wat2wasm('(module (memory (export "memory") 1) (func (export "_start")))')


@pytest.fixture
def fetched(monkeypatch) -> list[str]:
    """The URLs the runtime downloaded (it gets ``MODULE`` from each)."""
    urls: list[str] = []

    async def download(url: str) -> bytes:
        urls.append(url)
        return MODULE

    monkeypatch.setattr(wasm_runtime, "_download", download)
    return urls


async def run(tmp_path, **fields) -> list:
    runtime = WasmRuntime(fuel=10**8, memory_mb=16, cache_dir=tmp_path)
    return [event async for event in runtime.run({"input": "x", **fields})]


async def test_a_remote_module_without_the_cargos_hash_is_refused_unfetched(tmp_path, fetched):
    with pytest.raises(JobFailed, match="needs the Cargo's wasm_hash"):
        await run(tmp_path, wasm_url="http://192.168.1.1/probe.wasm")
    assert fetched == []


async def test_a_remote_module_whose_hash_differs_from_the_cargos_is_refused(tmp_path, fetched):
    with pytest.raises(JobFailed, match="hash mismatch"):
        await run(tmp_path, wasm_url="https://cargo.test/m.wasm", wasm_hash="ab" * 32)
    assert list(tmp_path.iterdir()) == []  # nothing kept


async def test_a_remote_module_with_the_cargos_hash_runs_and_is_kept(tmp_path, fetched):
    digest = hashlib.sha256(MODULE).hexdigest()
    await run(tmp_path, wasm_url="https://cargo.test/m.wasm", wasm_hash=f"sha256:{digest}")
    await run(tmp_path, wasm_url="https://cargo.test/m.wasm", wasm_hash=digest)
    assert fetched == ["https://cargo.test/m.wasm"]  # the second came from the cache
