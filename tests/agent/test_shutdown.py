"""Graceful shutdown on SIGTERM and SIGINT."""

import asyncio
import signal

import pytest

from .coordinator import job


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_it_finishes_its_running_job_then_sends_an_offline_heartbeat(
    coordinator, start_agent, signum
):
    agent = await start_agent(mock_tokens_per_second=20, max_concurrent_jobs=2)
    running = job()
    await coordinator.assign(agent.host_id, running)
    await coordinator.wait_for("output", job_id=running["job_id"])

    agent.signal(signum)
    signalled_at = coordinator.received
    await agent.wait_for_line("Shutting down")
    late = job()
    await coordinator.assign(agent.host_id, late)

    assert await agent.wait() == 0
    assert await coordinator.states(running["job_id"]) == ["started", "streaming", "succeeded"]
    assert await coordinator.states(late["job_id"]) == []
    beats = coordinator.of("heartbeat", host_id=agent.host_id)
    assert beats[-1]["status"] == "offline"
    assert beats[-1]["active_jobs"] == 0
    succeeded = next(
        m
        for m in coordinator.messages["status"]
        if m["job_id"] == running["job_id"] and m["state"] == "succeeded"
    )
    assert beats[-1]["_n"] > succeeded["_n"]
    assert any(
        b["status"] == "online"
        and b["active_jobs"] == 1
        and signalled_at < b["_n"] < succeeded["_n"]
        for b in beats
    ), "heartbeats stop while the Island waits for its job"


async def test_a_job_that_outlasts_the_grace_period_is_left_for_the_coordinator_to_requeue(
    coordinator, start_agent
):
    agent = await start_agent(mock_tokens_per_second=5, shutdown_grace=0.3)
    running = job()
    await coordinator.assign(agent.host_id, running)
    await coordinator.wait_for("output", job_id=running["job_id"])

    agent.signal()

    assert await agent.wait() == 0
    assert await coordinator.states(running["job_id"]) == ["started", "streaming"]
    beat = coordinator.of("heartbeat", host_id=agent.host_id)[-1]
    assert beat["status"] == "offline"
    await agent.wait_for_line("did not finish")


async def test_a_second_signal_stops_without_waiting_for_jobs(coordinator, start_agent):
    agent = await start_agent(mock_tokens_per_second=5, shutdown_grace=30)
    running = job()
    await coordinator.assign(agent.host_id, running)
    await coordinator.wait_for("output", job_id=running["job_id"])

    agent.signal()
    await agent.wait_for_line("Shutting down")
    await asyncio.sleep(0.1)
    agent.signal()

    assert await agent.wait(within=5) == 0
    assert coordinator.of("heartbeat", host_id=agent.host_id)[-1]["status"] == "offline"
