"""Registration, heartbeats and the connection of the reference agent (with its own
key, paired: it registers on its own subject, host.{id}.register)."""

import itertools
import time

import psutil
from island_cli.agent.connection import backoff_delay


def no_nulls(value) -> bool:
    if isinstance(value, dict):
        return all(v is not None and no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(v is not None and no_nulls(v) for v in value)
    return True


async def test_it_registers_with_the_machines_real_capabilities(coordinator, start_agent):
    agent = await start_agent()

    [register] = await coordinator.wait_for("register", host_id=agent.host_id)

    assert register["_subject"] == f"host.{agent.host_id}.register"
    assert {key for key in register if not key.startswith("_")} == {
        "host_id",
        "capabilities",
        "version",
        "name",
    }
    caps = register["capabilities"]
    assert caps["cpu_cores"] == psutil.cpu_count(logical=True)
    assert caps["ram_mb"] == psutil.virtual_memory().total // (1024 * 1024)
    assert caps["region"] == "eu-west"
    assert register["name"] == "test-island"
    assert register["version"]
    assert no_nulls(register)


async def test_its_heartbeat_has_every_field_and_the_asking_prices_of_its_config(
    coordinator, start_agent
):
    agent = await start_agent()

    beats = await coordinator.wait_for(
        "heartbeat", lambda m: "nats_rtt_ms" in m["performance_estimates"], host_id=agent.host_id
    )

    beat = beats[0]
    assert beat["_subject"] == f"host.{agent.host_id}.heartbeat"
    assert beat["status"] == "online"
    assert beat["active_jobs"] == 0
    assert abs(beat["timestamp"] - time.time() * 1000) < 10_000
    assert beat["agent_version"]
    assert set(beat["system"]) == {
        "cpu_percent",
        "memory_used_mb",
        "memory_total_mb",
        "disk_used_gb",
        "disk_total_gb",
    }
    assert beat["system"]["memory_total_mb"] == psutil.virtual_memory().total // (1024 * 1024)
    assert beat["active_job_metrics"] == []
    assert beat["cache"]["warm_workload_ids"] == []
    estimates = beat["performance_estimates"]
    assert estimates["supported_runtimes"] == ["container", "llmcpp", "wasm", "onnx"]  # the extra
    assert estimates["max_concurrent_containers"] == 1
    assert 0 <= estimates["nats_rtt_ms"] < 5000
    assert beat["asking_prices"] == {"llm-chat": "0.012", "sdxl": "0.05", "_default": "0.01"}
    assert no_nulls(beat)


async def test_its_heartbeat_lists_the_onnx_tasks_it_has_a_model_for(coordinator, start_agent):
    agent = await start_agent()

    [beat] = await coordinator.wait_for("heartbeat", host_id=agent.host_id)

    assert beat["performance_estimates"]["onnx_tasks"] == ["ocr"]  # no speech model, say


async def test_an_island_without_the_onnx_runtime_lists_no_onnx_tasks(coordinator, start_agent):
    agent = await start_agent(supported_runtimes=["wasm"])

    [beat] = await coordinator.wait_for("heartbeat", host_id=agent.host_id)

    assert "onnx_tasks" not in beat["performance_estimates"]


async def test_it_sends_a_heartbeat_at_the_configured_interval(coordinator, start_agent):
    agent = await start_agent(heartbeat_interval=0.2)

    beats = await coordinator.wait_for("heartbeat", host_id=agent.host_id, count=4)

    gaps = [b["timestamp"] - a["timestamp"] for a, b in itertools.pairwise(beats)]
    assert all(100 <= gap <= 600 for gap in gaps), gaps


def test_the_reconnect_backoff_doubles_from_1s_to_30s_with_jitter():
    for attempt, full in [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (12, 30)]:
        delays = [backoff_delay(attempt) for _ in range(200)]
        assert min(delays) >= full / 2
        assert max(delays) <= full
        assert len(set(delays)) > 1
