"""What the machine has and how busy it is: psutil for CPU, memory and disk, and
``nvidia-smi`` for NVIDIA GPUs when it is installed. Missing values are left out."""

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

MB = 1024 * 1024
GB = 1024 * MB
GPU_FIELDS = {
    "index": ("index", int),
    "utilization.gpu": ("utilization_percent", float),
    "memory.used": ("memory_used_mb", int),
    "memory.total": ("memory_total_mb", int),
    "temperature.gpu": ("temperature_c", float),
    "power.draw": ("power_draw_w", float),
}


def nvidia_smi(query: list[str]) -> list[list[str]]:
    """Rows of ``nvidia-smi --query-gpu=...``; empty when there is no NVIDIA GPU."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    cmd = [binary, f"--query-gpu={','.join(query)}", "--format=csv,noheader,nounits"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("nvidia-smi failed: %s", exc)
        return []
    return [
        [cell.strip() for cell in line.split(",")]
        for line in result.stdout.splitlines()
        if line.strip()
    ]


def _number(text: str, kind: type) -> Any:
    try:
        return kind(float(text))
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def capabilities(region: str | None) -> dict[str, Any]:
    """The ``capabilities`` of ``coordinator.hosts.register``."""
    caps: dict[str, Any] = {
        "cpu_cores": psutil.cpu_count(logical=True) or 1,
        "ram_mb": psutil.virtual_memory().total // MB,
    }
    rows = nvidia_smi(["name", "memory.total"])
    if rows:
        caps["gpu_model"] = rows[0][0]
        vram = _number(rows[0][1], int) if len(rows[0]) > 1 else None
        if vram is not None:
            caps["gpu_vram_mb"] = vram
    if region:
        caps["region"] = region
    return caps


def system_metrics(disk_path: Path) -> dict[str, Any]:
    """The heartbeat's ``system`` object."""
    memory = psutil.virtual_memory()
    path = disk_path if disk_path.exists() else Path.home()
    disk = psutil.disk_usage(str(path))
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_used_mb": (memory.total - memory.available) // MB,
        "memory_total_mb": memory.total // MB,
        "disk_used_gb": round(disk.used / GB, 2),
        "disk_total_gb": round(disk.total / GB, 2),
    }


def gpu_metrics() -> list[dict[str, Any]]:
    """The heartbeat's ``gpus`` list (empty without NVIDIA GPUs)."""
    gpus = []
    for row in nvidia_smi(list(GPU_FIELDS)):
        gpu = {}
        for cell, (name, kind) in zip(row, GPU_FIELDS.values(), strict=False):
            value = _number(cell, kind)
            if value is not None:
                gpu[name] = value
        gpus.append(gpu)
    return gpus


def prime_cpu_percent() -> None:
    """psutil measures CPU use between two calls; the first call only starts the clock."""
    psutil.cpu_percent(interval=None)
