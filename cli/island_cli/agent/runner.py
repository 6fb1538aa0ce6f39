"""The agent process: connect, start the Island (or N simulated ones), run until SIGINT
or SIGTERM, then stop gracefully (no new jobs, up to ``shutdown_grace`` seconds for
running ones, a last heartbeat with ``"status": "offline"``, drain, close). A second
signal skips the wait."""

import asyncio
import contextlib
import functools
import signal
import uuid
from collections.abc import Callable
from dataclasses import replace

import click
from nats.aio.client import Client

from . import state as state_file
from .config import SUPPORTED_RUNTIMES, AgentConfig, ConfigError
from .connection import connect, redact
from .identity import load as load_identity
from .island import Island, Machine, RttMeter
from .runtimes import Runtime
from .runtimes.mock import MockRuntime
from .runtimes.wasm import WasmRuntime
from .state import State

FLUSH_EVERY = 500


def say(line: str) -> None:
    click.echo(line)


def build_runtimes(config: AgentConfig) -> dict[str, Runtime]:
    """The runtime serving each assignment ``runtime_type`` this Island supports: WASM
    Cargos run in wasmtime, ONNX ones on onnxruntime; every other type goes to the
    configured LLM runtime."""
    runtimes: dict[str, Runtime] = {}
    primary: Runtime | None = None
    for runtime_type in config.supported_runtimes:
        if runtime_type == "wasm":
            runtimes["wasm"] = WasmRuntime(
                fuel=config.wasm_fuel,
                memory_mb=config.wasm_memory_mb,
                cache_dir=config.state_dir / "cache" / "wasm",
            )
            continue
        if runtime_type == "onnx":
            runtimes["onnx"] = _onnx_runtime()
            continue
        if config.runtime == "wasm":
            raise ConfigError(f"[agent] runtime wasm cannot serve {runtime_type!r} jobs")
        if primary is None:
            primary = _llm_runtime(config)
        runtimes[runtime_type] = primary
    return runtimes


def _onnx_runtime() -> Runtime:
    from .runtimes import onnx

    if not onnx.available():
        raise ConfigError("runtime onnx needs its extra: pip install 'island-cli[onnx]'")
    return onnx.OnnxRuntime()


def _llm_runtime(config: AgentConfig) -> Runtime:
    if config.runtime == "llmcpp":
        from .runtimes.llmcpp import LlmCppRuntime  # optional extra, imported lazily

        assert config.model_path is not None  # checked by config.parse
        return LlmCppRuntime(model_path=config.model_path)
    return MockRuntime(config.mock_tokens_per_second)


def describe(config: AgentConfig) -> str:
    onnx = " + onnx (OCR)" if "onnx" in config.supported_runtimes else ""
    if config.runtime == "mock":
        return f"mock (a deterministic stand-in for an LLM, not a real model){onnx}"
    if config.runtime == "llmcpp":
        return f"llmcpp ({config.model_path}){onnx}"
    return "wasm"


async def run(config: AgentConfig, *, simulate: int = 0, say: Callable[[str], None] = say) -> int:
    if simulate:
        config = _simulated_config(config)
    runtimes = build_runtimes(config)
    state = state_file.load(config.state_dir, host_id=config.host_id)
    identity = load_identity(config.nats_url, config.state_dir)
    if simulate and identity.keyed:
        raise ConfigError(
            "--simulate speaks for many Islands on one connection: it needs the shared "
            "field user (user:password in nats_url)"
        )
    stop, force = asyncio.Event(), asyncio.Event()
    _handle_signals(stop, force, say)
    islands: list[Island] = []

    async def reconnected() -> None:
        for number, island in enumerate(islands, start=1):
            await island.reconnected()
            if number % FLUSH_EVERY == 0:
                await island.nc.flush()

    name = f"island-{state.host_id[:8]}"
    if simulate:
        say(f"Simulating {simulate} Islands · runtime {describe(config)}")
    else:
        say(f"Island {state.host_id} ({config.name}) · runtime {describe(config)}")
    say(f"Connecting to {redact(config.nats_url)} as {name}")
    connecting = asyncio.create_task(
        connect(
            config.nats_url,
            name=name,
            on_reconnect=reconnected,
            on_attempt_failed=lambda exc, delay: say(
                f"Cannot reach NATS ({exc or type(exc).__name__}); retrying in {delay:.1f}s"
            ),
            **identity.connect_options(),
        )
    )
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([connecting, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not connecting.done():
        connecting.cancel()
        say("Stopped.")
        return 0
    nc = connecting.result()

    machine = Machine(region=config.region, disk_path=config.state_dir)
    new_island = functools.partial(
        Island, nc=nc, identity=identity, runtimes=runtimes, machine=machine, say=say
    )
    if simulate:
        islands.extend(_simulated(new_island, nc, config, state, simulate))
    else:
        islands.append(new_island(config=config, state=state, rtt=RttMeter(nc, state.host_id)))
    for number, island in enumerate(islands, start=1):
        await island.start()
        if number % FLUSH_EVERY == 0:
            await nc.flush()
    await nc.flush()
    if simulate:
        say(f"Connected; registered {len(islands)} Island(s)")
    elif islands[0].ready:
        say("Connected and registered")
    else:
        say("Connected; waiting to be paired")

    await stopping
    say("Shutting down: no new jobs; waiting for running jobs…")
    await asyncio.gather(*(i.stop(grace=config.shutdown_grace, force=force) for i in islands))
    with contextlib.suppress(Exception):
        await nc.drain()
    say("Stopped.")
    return 0


def _handle_signals(stop: asyncio.Event, force: asyncio.Event, say: Callable[[str], None]) -> None:
    def on_signal() -> None:
        if stop.is_set():
            force.set()
            return
        stop.set()
        say("Stopping (send the signal again to stop without waiting for jobs)…")

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)


def _simulated_config(config: AgentConfig) -> AgentConfig:
    if config.runtime == "mock":
        return config
    return replace(config, runtime="mock", supported_runtimes=list(SUPPORTED_RUNTIMES["mock"]))


def _simulated(
    new_island: Callable[..., Island], nc: Client, config: AgentConfig, state: State, count: int
) -> list[Island]:
    """Light Islands: stable host_ids derived from this Island's, no pairing, no state
    file, a core subscription for jobs, and shared metrics and RTT."""
    base = uuid.UUID(state.host_id)
    rtt = RttMeter(nc, str(uuid.uuid5(base, "simulated-1")))
    return [
        new_island(
            config=replace(config, name=f"{config.name}-sim-{index}"),
            state=State(host_id=str(uuid.uuid5(base, f"simulated-{index}"))),
            rtt=rtt,
            interactive=False,
            first_heartbeat_delay=config.heartbeat_interval * (index - 1) / count,
        )
        for index in range(1, count + 1)
    ]
