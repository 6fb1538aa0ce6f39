"""Whether an Island's hardware and runtimes can serve a Cargo (placement, market and
recommendations all ask the same question)."""

from compute.models import Cargo, Island


def can_serve(island: Island, cargo: Cargo) -> bool:
    caps = island.capabilities or {}
    if cargo.runtime_type not in (island.runtimes or []):
        return False
    if cargo.required_ram_mb and int(caps.get("ram_mb") or 0) < cargo.required_ram_mb:
        return False
    return not (
        cargo.required_vram_mb and int(caps.get("gpu_vram_mb") or 0) < cargo.required_vram_mb
    )
