"""``wasm``: WebAssembly (WASI command) Cargos in wasmtime, with fuel and memory limits.

The module comes from the assignment's ``wasm_url``: ``builtin:<name>`` (or no URL) runs
a module shipped with the agent (``wasm/<name>.wat``, by default ``wordcount``); an
``http(s)`` URL runs only with the Cargo's ``wasm_hash`` (sha256): it is downloaded once,
checked against that hash and cached; without one it is refused unfetched.
The job input goes to the module's stdin: a string as is, ``{"text": ...}`` as its text,
anything else as JSON. Its stdout is the job's output.

Each job gets its own engine, so that a cancel or a time limit can interrupt exactly that
job (an epoch tick) while it runs in a worker thread.
"""

import asyncio
import hashlib
import json
import re
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import wasmtime

from . import Event, JobFailed

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "wasm"
HASH = re.compile(r"[0-9a-f]{64}")
DEFAULT_MODULE = "wordcount"
MAX_MODULE_BYTES = 50 * 1024 * 1024
MAX_OUTPUT_BYTES = 1024 * 1024
CHUNK_BYTES = 16 * 1024


def module_source(name: str) -> str:
    path = BUILTIN_DIR / f"{name}.wat"
    if not name.isidentifier() or not path.is_file():
        raise JobFailed(f"Unknown builtin WASM module: {name}")
    return path.read_text(encoding="utf-8")


def stdin_bytes(job_input: Any) -> bytes:
    if isinstance(job_input, str):
        return job_input.encode()
    if isinstance(job_input, dict) and isinstance(job_input.get("text"), str):
        return job_input["text"].encode()
    return json.dumps(job_input).encode()


class WasmRuntime:
    name = "wasm"

    def __init__(self, *, fuel: int, memory_mb: int, cache_dir: Path):
        self.fuel = fuel
        self.memory_bytes = memory_mb * 1024 * 1024
        self.cache_dir = cache_dir

    async def run(self, job: dict[str, Any]) -> AsyncIterator[Event]:
        source = await self._module(job)
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        engine = wasmtime.Engine(config)
        cancelled = threading.Event()
        thread = asyncio.ensure_future(
            asyncio.to_thread(
                self._execute, engine, source, stdin_bytes(job.get("input")), cancelled
            )
        )
        try:
            output = await asyncio.shield(thread)
        except asyncio.CancelledError:
            cancelled.set()
            engine.increment_epoch()  # traps the module at its next loop or call
            await asyncio.wait([thread])
            if not thread.cancelled():
                thread.exception()  # retrieved: the trap is the expected end of a cancel
            raise
        for start in range(0, len(output), CHUNK_BYTES):
            yield {
                "type": "token",
                "content": output[start : start + CHUNK_BYTES].decode(errors="replace"),
            }
        yield {"type": "done"}

    def _execute(
        self, engine: wasmtime.Engine, source: str | bytes, stdin: bytes, cancelled: threading.Event
    ) -> bytes:
        output = bytearray()

        def write(data: bytes) -> int:
            if len(output) + len(data) > MAX_OUTPUT_BYTES:
                return -27  # EFBIG
            output.extend(data)
            return len(data)

        with tempfile.NamedTemporaryFile(prefix="island-stdin-") as stdin_file:
            stdin_file.write(stdin)
            stdin_file.flush()
            wasi = wasmtime.WasiConfig()
            wasi.stdin_file = stdin_file.name
            wasi.stdout_custom = write
            store = wasmtime.Store(engine)
            store.set_limits(memory_size=self.memory_bytes)
            store.set_fuel(self.fuel)
            store.set_epoch_deadline(1)
            store.set_wasi(wasi)
            try:
                module = wasmtime.Module(engine, source)
                linker = wasmtime.Linker(engine)
                linker.define_wasi()
                instance = linker.instantiate(store, module)
                # After set_epoch_deadline: a cancel before this point is seen here, one
                # after it traps the module through the epoch.
                if cancelled.is_set():
                    return b""
                start = instance.exports(store)["_start"]
                assert isinstance(start, wasmtime.Func)
                start(store)
            except wasmtime.ExitTrap as exc:
                if exc.code != 0:
                    raise JobFailed(f"WASM module exited with code {exc.code}") from None
            except wasmtime.Trap as exc:
                if exc.trap_code == wasmtime.TrapCode.OUT_OF_FUEL:
                    raise JobFailed(f"WASM fuel exhausted (limit {self.fuel})") from None
                reason = (
                    exc.trap_code.name.lower() if exc.trap_code else exc.message.splitlines()[-1]
                )
                raise JobFailed(f"WASM trap: {reason}") from None
            except wasmtime.WasmtimeError as exc:
                raise JobFailed(f"WASM module failed: {str(exc).splitlines()[0]}") from None
        return bytes(output)

    async def _module(self, job: dict[str, Any]) -> str | bytes:
        url = job.get("wasm_url") or f"builtin:{DEFAULT_MODULE}"
        if not isinstance(url, str):
            raise JobFailed("wasm_url must be a string")
        if url.startswith("builtin:"):
            return module_source(url.removeprefix("builtin:"))
        if not url.startswith(("https://", "http://")):
            raise JobFailed(f"Unsupported wasm_url: {url}")
        expected = str(job.get("wasm_hash") or "").removeprefix("sha256:").lower()
        if not HASH.fullmatch(expected):
            # Without the Cargo's hash nothing says what the URL should hold: fetching it
            # would let whoever names the URL make this machine request it.
            raise JobFailed("A remote WASM module needs the Cargo's wasm_hash (sha256)")
        cached = self.cache_dir / f"{expected}.wasm"
        if cached.is_file():
            return cached.read_bytes()
        data = await _download(url)
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            raise JobFailed(f"WASM module hash mismatch: expected {expected}, got {digest}")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        (self.cache_dir / f"{digest}.wasm").write_bytes(data)
        return data


async def _download(url: str) -> bytes:
    data = bytearray()
    try:
        async with (
            httpx.AsyncClient(timeout=30, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                data.extend(chunk)
                if len(data) > MAX_MODULE_BYTES:
                    raise JobFailed("WASM module is larger than 50 MB")
    except httpx.HTTPError as exc:
        raise JobFailed(f"Cannot download WASM module: {exc}") from None
    return bytes(data)
