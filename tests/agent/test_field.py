"""Field Islands: the agent with the shared field user's ``user:password`` in its
nats_url, as upstream agents connect. It speaks the protocol's plain subjects, which the
coordinator hears under ``field.``; its account has no JetStream, so its assignments come
on core NATS (``field.host.{id}.jobs``, which it hears as ``host.{id}.jobs``)."""

import asyncio

import nats.js.errors
import pytest
from island_cli.agent.runtimes.mock import reply_tokens

from .coordinator import fields_of, job


async def test_a_field_island_registers_on_the_protocols_subject_and_makes_no_key(
    coordinator, start_agent
):
    agent = await start_agent(field=True)

    [register] = await coordinator.wait_for("register", host_id=agent.host_id)
    [beat] = await coordinator.wait_for(
        "heartbeat", lambda m: "nats_rtt_ms" in m["performance_estimates"], host_id=agent.host_id
    )

    assert register["_subject"] == "field.coordinator.hosts.register"
    assert set(fields_of(register)) == {"host_id", "capabilities", "version", "name"}
    assert register["name"] == "test-island"
    assert beat["_subject"] == f"field.host.{agent.host_id}.heartbeat"
    assert beat["status"] == "online"
    assert not (agent.state_dir / "nkey.seed").exists()
    await agent.wait_for_line("Connected and registered")


async def test_a_field_island_pairs_and_runs_a_job_received_on_core_nats(coordinator, start_agent):
    agent = await start_agent(field=True)
    await agent.wait_for_line("Pairing code: A3X9K2")
    await coordinator.send(agent.host_id, "paired", {"account_id": 42}, field=True)
    await agent.wait_for_line("Paired with account 42 — this Island is ready")
    assignment = job()

    await coordinator.assign(agent.host_id, assignment, field=True)

    job_id = assignment["job_id"]
    done = await coordinator.succeeded(job_id)
    assert await coordinator.states(job_id) == ["started", "streaming", "succeeded"]
    expected = reply_tokens(assignment["input"])
    outputs = coordinator.of("output", job_id=job_id)
    assert [o["chunk"] for o in outputs] == [*expected, ""]
    assert {o["_subject"] for o in outputs} == {f"field.host.{agent.host_id}.output"}
    assert done["_subject"] == f"field.host.{agent.host_id}.status"
    assert done["usage"]["completion_tokens"] == len(expected)
    with pytest.raises(nats.js.errors.NotFoundError):  # it has no JetStream to make one
        await coordinator.js.consumer_info("JOBS", f"host-{agent.host_id}")


async def test_a_cancel_on_core_nats_stops_a_field_islands_job(coordinator, start_agent):
    agent = await start_agent(field=True, mock_tokens_per_second=10)
    assignment = job()
    await coordinator.assign(agent.host_id, assignment, field=True)
    await coordinator.wait_for("output", job_id=assignment["job_id"])

    await coordinator.send(agent.host_id, "cancel", {"job_id": assignment["job_id"]}, field=True)

    await coordinator.wait_for(
        "status", lambda m: m["state"] == "cancelled", job_id=assignment["job_id"]
    )
    await asyncio.sleep(0.3)
    assert await coordinator.states(assignment["job_id"]) == ["started", "streaming", "cancelled"]


async def test_a_job_delivered_twice_on_core_nats_runs_only_once(coordinator, start_agent):
    agent = await start_agent(field=True)
    assignment = job()

    await coordinator.assign(agent.host_id, assignment, field=True)
    await coordinator.assign(agent.host_id, assignment, field=True)

    await coordinator.succeeded(assignment["job_id"])
    await asyncio.sleep(0.3)
    assert await coordinator.states(assignment["job_id"]) == ["started", "streaming", "succeeded"]
