"""Island protocol messages as the field agent sends them, for tests and benchmarks."""

import time
import uuid
from datetime import UTC, datetime

import orjson

from sail import subjects
from sail.registry import Incoming


def register(host_id: str, **extra) -> dict:
    return {
        "host_id": host_id,
        "capabilities": {
            "gpu_model": "RTX 4090",
            "gpu_vram_mb": 24576,
            "cpu_cores": 16,
            "ram_mb": 65536,
            "region": "eu-west",
        },
        "version": "0.9.1",
        **extra,
    }


def heartbeat(host_id: str, **extra) -> dict:
    """A full heartbeat with every optional section."""
    return {
        "host_id": host_id,
        "status": "online",
        "active_jobs": 1,
        "timestamp": int(time.time() * 1000),
        "agent_version": "0.9.1",
        "system": {
            "cpu_percent": 12.5,
            "memory_used_mb": 8000,
            "memory_total_mb": 65536,
            "disk_used_gb": 120.5,
            "disk_total_gb": 1000,
        },
        "gpus": [
            {
                "index": 0,
                "utilization_percent": 40,
                "memory_used_mb": 4000,
                "memory_total_mb": 24576,
                "temperature_c": 61,
                "power_draw_w": 210.5,
            }
        ],
        "active_job_metrics": [
            {
                "job_id": str(uuid.uuid4()),
                "job_type": "llm",
                "duration_ms": 1200,
                "tokens_generated": 42,
            }
        ],
        "cache": {
            "cached_image_count": 3,
            "cached_size_mb": 5120,
            "warm_workload_count": 2,
            "warm_workload_ids": ["llama-3-8b", 7],
        },
        "performance_estimates": {
            "gpu_bandwidth_gb_s": 1008,
            "estimated_llm_tok_s": 95.5,
            "max_concurrent_containers": 2,
            "supported_runtimes": ["container", "llmcpp", "wasm"],
            "nats_rtt_ms": 3.2,
        },
        "asking_prices": {"llama-3-8b": "0.02", "_default": "0.01"},
        **extra,
    }


def incoming(subject: str, payload: dict | bytes, at: datetime | None = None) -> Incoming:
    host_id, kind, _ = subjects.kind_of(subject)
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Incoming(subject, host_id, kind, data, at or datetime.now(UTC))
