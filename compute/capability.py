"""Whether an Island's hardware and runtimes can serve a Cargo (placement, market and
recommendations all ask the same question).

An ONNX Cargo needs an Island with a model for its ``onnx_task_type``: an Island that
lists its tasks (``performance_estimates.onnx_tasks``, an extension of the heartbeat)
takes only those; one that advertises ``onnx`` without a list (the field agent, which
fetches the Cargo's ``onnx_model_url``) takes any, as the protocol never depends on an
extension."""

from typing import Any

from compute.models import Cargo, Island


def onnx_task(cargo: Cargo) -> str:
    """The ONNX task a Cargo needs an Island to have a model for ("" for none)."""
    return (cargo.onnx_task_type or "") if cargo.runtime_type == Cargo.Runtime.ONNX else ""


def onnx_tasks(listed: Any) -> frozenset[str] | None:
    """An Island's ``onnx_tasks`` as a set (None: it lists none, so any task)."""
    return frozenset(t for t in listed if isinstance(t, str)) if isinstance(listed, list) else None


def listed_tasks(island: Island) -> frozenset[str] | None:
    estimates = (island.metrics or {}).get("performance_estimates")
    return onnx_tasks(estimates.get("onnx_tasks") if isinstance(estimates, dict) else None)


def can_serve(island: Island, cargo: Cargo) -> bool:
    caps = island.capabilities or {}
    if cargo.runtime_type not in (island.runtimes or []):
        return False
    task, tasks = onnx_task(cargo), listed_tasks(island)
    if task and tasks is not None and task not in tasks:
        return False
    if cargo.required_ram_mb and int(caps.get("ram_mb") or 0) < cargo.required_ram_mb:
        return False
    return not (
        cargo.required_vram_mb and int(caps.get("gpu_vram_mb") or 0) < cargo.required_vram_mb
    )
