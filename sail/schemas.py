"""Typed shapes of the Island → coordinator messages (shared/spec island-protocol.md).

Decoding with msgspec validates types in the same pass as parsing JSON (a few µs for a
full heartbeat), which is what lets one bridge process keep up with tens of thousands of
Islands. Unknown fields are ignored, as the protocol requires; omitted optional fields
decode to ``None`` so that an older agent never erases what a newer one reported.
"""

import uuid
from typing import Annotated, TypeVar

import msgspec

Count = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]  # fits a Postgres integer
Number = int | float
Short = Annotated[str, msgspec.Meta(max_length=200)]
Id = Annotated[str, msgspec.Meta(max_length=100)]


class Invalid(ValueError):
    """A message that breaks the protocol; the bridge logs it and moves on."""


class Capabilities(msgspec.Struct, omit_defaults=True):
    cpu_cores: Count | None = None
    ram_mb: Count | None = None
    gpu_model: Short | None = None
    gpu_vram_mb: Count | None = None
    region: Annotated[str, msgspec.Meta(max_length=50)] | None = None


class Register(msgspec.Struct):
    host_id: Id
    capabilities: Capabilities = msgspec.field(default_factory=Capabilities)
    version: Annotated[str, msgspec.Meta(max_length=50)] | None = None
    # Extension: the Island's display name from its config ([host] name).
    name: Annotated[str, msgspec.Meta(max_length=100)] | None = None


class PairingRequest(msgspec.Struct):
    host_id: Id
    # Extension: an Island with a key of its own may not register before it is paired,
    # so its pairing request says what a registration would.
    capabilities: Capabilities | None = None
    version: Annotated[str, msgspec.Meta(max_length=50)] | None = None
    name: Annotated[str, msgspec.Meta(max_length=100)] | None = None


class System(msgspec.Struct, omit_defaults=True):
    cpu_percent: Number | None = None
    memory_used_mb: Number | None = None
    memory_total_mb: Number | None = None
    disk_used_gb: Number | None = None
    disk_total_gb: Number | None = None


class Gpu(msgspec.Struct, omit_defaults=True):
    index: Count | None = None
    utilization_percent: Number | None = None
    memory_used_mb: Number | None = None
    memory_total_mb: Number | None = None
    temperature_c: Number | None = None
    power_draw_w: Number | None = None


class JobMetrics(msgspec.Struct, omit_defaults=True):
    job_id: Id
    job_type: Short | None = None
    duration_ms: Number | None = None
    tokens_generated: Number | None = None
    memory_mb: Number | None = None
    gpu_memory_mb: Number | None = None


class Cache(msgspec.Struct, omit_defaults=True):
    cached_image_count: Count | None = None
    cached_size_mb: Number | None = None
    warm_workload_count: Count | None = None
    warm_workload_ids: Annotated[list[Id | int], msgspec.Meta(max_length=500)] | None = None


class Performance(msgspec.Struct, omit_defaults=True):
    gpu_bandwidth_gb_s: Number | None = None
    estimated_llm_tok_s: Number | None = None
    max_concurrent_containers: Count | None = None
    wasm_memory_limit_mb: Number | None = None
    supported_runtimes: Annotated[list[Short], msgspec.Meta(max_length=20)] | None = None
    # Extension: the onnx_task_type values an ``onnx`` Island has a model for (absent: any).
    onnx_tasks: Annotated[list[Short], msgspec.Meta(max_length=50)] | None = None
    nats_rtt_ms: Number | None = None
    public_addr: Short | None = None


class Heartbeat(msgspec.Struct):
    host_id: Id
    status: Annotated[str, msgspec.Meta(max_length=20)] = "online"
    active_jobs: Count = 0
    timestamp: int | None = None
    agent_version: Annotated[str, msgspec.Meta(max_length=50)] | None = None
    system: System | None = None
    gpus: Annotated[list[Gpu], msgspec.Meta(max_length=16)] | None = None
    active_job_metrics: Annotated[list[JobMetrics], msgspec.Meta(max_length=64)] | None = None
    cache: Cache | None = None
    performance_estimates: Performance | None = None
    asking_prices: Annotated[dict[Short, Short], msgspec.Meta(max_length=200)] | None = None


T = TypeVar("T")
_decoders: dict[type, msgspec.json.Decoder] = {}


def decode(data: bytes, shape: type[T]) -> T:
    """Parse and validate ``data`` as ``shape``, or raise :class:`Invalid`."""
    decoder = _decoders.get(shape)
    if decoder is None:
        decoder = _decoders[shape] = msgspec.json.Decoder(shape)
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise Invalid(str(exc)) from exc


encode = msgspec.json.Encoder().encode
to_builtins = msgspec.to_builtins


def host_uuid(value: str) -> str:
    """An Island's id in its one spelling (a UUID's), or :class:`Invalid`."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Invalid(f"host_id is not a UUID: {value[:40]!r}") from None
