"""The agent's configuration file (``~/.island/config.toml``).

The protocol's keys (``host_id``, ``[host]``, ``[coordinator]``, ``[pricing]``) plus our
own ``[agent]`` table. Other top-level keys (``api_key`` of the CLI) are left alone. A bad
value raises ConfigError with one human-readable line; the command exits with code 2.
"""

import os
import tomllib
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = Path("~/.island/config.toml")
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
RUNTIMES = ("mock", "wasm", "llmcpp")
# Which assignment runtime types each agent runtime serves. The mock stands in for the LLM
# Cargos (container and llmcpp); every agent can run WASM (wasmtime is a dependency), and
# ONNX Cargos when the ``onnx`` extra is installed (added by default then, see _runtimes).
SUPPORTED_RUNTIMES = {
    "mock": ["container", "llmcpp", "wasm"],
    "llmcpp": ["llmcpp", "wasm"],
    "wasm": ["wasm"],
}
DEFAULT_TIME_LIMITS = {"container": 300.0, "wasm": 60.0, "llmcpp": 300.0, "onnx": 60.0}


class ConfigError(Exception):
    """A configuration problem, explained in one line."""


@dataclass(frozen=True)
class AgentConfig:
    path: Path | None = None
    host_id: str | None = None
    name: str = ""
    region: str | None = None
    nats_url: str = DEFAULT_NATS_URL
    api_url: str | None = None
    default_price: str | None = None
    workload_prices: dict[str, str] = field(default_factory=dict)
    runtime: str = "mock"
    state_dir: Path = field(default_factory=lambda: Path("~/.island").expanduser())
    mock_tokens_per_second: float = 20.0
    model_path: Path | None = None
    max_concurrent_jobs: int = 1
    supported_runtimes: list[str] = field(default_factory=list)
    time_limits: dict[str, float] = field(default_factory=dict)
    heartbeat_interval: float = 10.0
    lease_interval: float = 30.0
    lease_extend_seconds: int = 60
    shutdown_grace: float = 30.0
    pairing_retry: float = 30.0
    jobs_stream: str = "JOBS"
    stream_recheck_interval: float = 30.0
    recommendations_interval: float = 900.0  # GET /island/recommendations (with api_url)
    wasm_fuel: int = 2_000_000_000
    wasm_memory_mb: int = 64

    @property
    def asking_prices(self) -> dict[str, str]:
        prices = dict(self.workload_prices)
        if self.default_price is not None:
            prices["_default"] = self.default_price
        return prices

    def time_limit(self, runtime_type: str) -> float:
        return self.time_limits.get(runtime_type, self.time_limits["container"])


# [agent] numbers: key -> (type, smallest allowed value)
_AGENT_NUMBERS: dict[str, tuple[type, float]] = {
    "mock_tokens_per_second": (float, 0),
    "max_concurrent_jobs": (int, 1),
    "heartbeat_interval": (float, 0.05),
    "lease_interval": (float, 0.05),
    "lease_extend_seconds": (int, 1),
    "shutdown_grace": (float, 0),
    "pairing_retry": (float, 0.05),
    "stream_recheck_interval": (float, 0.05),
    "recommendations_interval": (float, 0.05),
    "wasm_fuel": (int, 1),
    "wasm_memory_mb": (int, 1),
}
_AGENT_KEYS = {
    *_AGENT_NUMBERS,
    "runtime",
    "state_dir",
    "model_path",
    "supported_runtimes",
    "time_limits",
    "jobs_stream",
}


def load(path: Path | None) -> AgentConfig:
    """Read and check the config file. ``None`` means the default path, which may be
    absent (defaults apply); an explicit path must exist."""
    explicit = path is not None
    path = (path or DEFAULT_CONFIG_PATH).expanduser()
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file not found: {path}")
        return parse({}, path=None)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}") from exc
    return parse(data, path=path)


def parse(data: dict[str, Any], *, path: Path | None) -> AgentConfig:
    host = _table(data, "host")
    coordinator = _table(data, "coordinator")
    pricing = _table(data, "pricing")
    agent = _table(data, "agent")
    unknown = sorted(set(agent) - _AGENT_KEYS)
    if unknown:
        raise ConfigError(f"unknown key in [agent]: {', '.join(unknown)}")

    runtime = _string(agent, "runtime", "agent", default="mock")
    if runtime not in RUNTIMES:
        raise ConfigError(f"[agent] runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    values: dict[str, Any] = {
        "path": path,
        "host_id": _host_id(data.get("host_id")),
        "name": _string(host, "name", "host", default="") or _default_name(),
        "region": _string(host, "region", "host", default=None),
        "nats_url": os.environ.get("ARCHIPELAG_NATS_URL")
        or _string(coordinator, "nats_url", "coordinator", default=DEFAULT_NATS_URL),
        "api_url": _string(coordinator, "api_url", "coordinator", default=None),
        "default_price": _price(pricing.get("default_price"), "[pricing] default_price"),
        "workload_prices": _workload_prices(pricing.get("workloads", {})),
        "runtime": runtime,
        "state_dir": Path(_string(agent, "state_dir", "agent", default="~/.island")).expanduser(),
        "supported_runtimes": _runtimes(agent.get("supported_runtimes"), runtime),
        "time_limits": _time_limits(agent.get("time_limits", {})),
        "jobs_stream": _string(agent, "jobs_stream", "agent", default="JOBS"),
    }
    for key, (kind, minimum) in _AGENT_NUMBERS.items():
        if key in agent:
            values[key] = _number(agent[key], f"[agent] {key}", kind, minimum)
    if "model_path" in agent:
        values["model_path"] = Path(_string(agent, "model_path", "agent", default="")).expanduser()
    if runtime == "llmcpp" and values.get("model_path") is None:
        raise ConfigError("[agent] model_path (a local GGUF file) is required by runtime llmcpp")
    return AgentConfig(**values)


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    return table


def _string(table: dict[str, Any], key: str, section: str, *, default: Any) -> Any:
    value = table.get(key, default)
    if value is not default and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"[{section}] {key} must be a non-empty string")
    return value


def _number(value: Any, label: str, kind: type, minimum: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{label} must be a number")
    if kind is int and not float(value).is_integer():
        raise ConfigError(f"{label} must be a whole number")
    if value < minimum:
        raise ConfigError(f"{label} must be at least {minimum}")
    return kind(value)


def _host_id(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ConfigError(f"host_id must be a UUID, got {value!r}") from None


def _price(value: Any, label: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f'{label} must be a price such as "0.01"')
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f'{label} must be a price such as "0.01", got {value!r}') from None
    if not price.is_finite() or price < 0:
        raise ConfigError(f"{label} must be a price of 0 or more, got {value!r}")
    return str(value)


def _workload_prices(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError('[pricing] workloads must be a table such as {llm-chat = "0.01"}')
    return {slug: _price(price, f"[pricing] workloads.{slug}") for slug, price in value.items()}  # type: ignore[misc]


def _runtimes(value: Any, runtime: str) -> list[str]:
    if value is None:
        from .runtimes import onnx

        extra = ["onnx"] if runtime != "wasm" and onnx.available() else []
        return [*SUPPORTED_RUNTIMES[runtime], *extra]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError("[agent] supported_runtimes must be a non-empty list of strings")
    return list(value)


def _time_limits(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ConfigError("[agent] time_limits must be a table such as {wasm = 60}")
    limits = dict(DEFAULT_TIME_LIMITS)
    for key, seconds in value.items():
        limits[key] = _number(seconds, f"[agent] time_limits.{key}", float, 0.01)
    return limits


def _default_name() -> str:
    return os.uname().nodename or "island"
