"""Running assignments: JetStream intake (the consumer ``host-{id}`` the coordinator made
for an Island with a key), the message sequence, cancel, time limits, leases and
concurrency. (Core NATS intake, for field Islands: test_field.py.)"""

import asyncio

from island_cli.agent.runtimes.mock import reply_tokens

from .coordinator import job


async def consumer_info(coordinator, host_id):
    return await coordinator.js.consumer_info("JOBS", f"host-{host_id}")


async def test_it_runs_a_job_from_the_jobs_stream_and_reports_it_in_protocol_order(
    coordinator, start_agent
):
    agent = await start_agent()
    assignment = job()

    await coordinator.assign(agent.host_id, assignment)

    job_id = assignment["job_id"]
    done = await coordinator.succeeded(job_id)
    assert await coordinator.states(job_id) == ["started", "streaming", "succeeded"]
    expected = reply_tokens(assignment["input"])
    outputs = coordinator.of("output", job_id=job_id)
    assert [o["seq"] for o in outputs] == list(range(1, len(expected) + 2))
    assert [o["chunk"] for o in outputs] == [*expected, ""]
    assert [o["is_final"] for o in outputs] == [False] * len(expected) + [True]
    assert done["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": len(expected),
        "total_tokens": 2 + len(expected),
    }
    assert all(isinstance(m["timestamp"], int) for m in coordinator.of("status", job_id=job_id))
    info = await consumer_info(coordinator, agent.host_id)
    assert info.config.ack_policy == "explicit"
    assert info.config.max_deliver == 5
    assert info.config.ack_wait == 60
    assert info.config.filter_subject == f"host.{agent.host_id}.jobs"
    assert info.num_ack_pending == 0
    assert info.delivered.consumer_seq == 1


async def test_it_acks_an_assignment_on_receipt_before_running_it(coordinator, start_agent):
    agent = await start_agent(mock_tokens_per_second=10)
    assignment = job()

    await coordinator.assign(agent.host_id, assignment)
    await coordinator.wait_for(
        "status", lambda m: m["state"] == "started", job_id=assignment["job_id"]
    )

    info = await consumer_info(coordinator, agent.host_id)
    assert info.num_ack_pending == 0
    assert await coordinator.states(assignment["job_id"]) in (["started"], ["started", "streaming"])


async def test_a_cancel_stops_the_job_and_reports_cancelled(coordinator, start_agent):
    agent = await start_agent(mock_tokens_per_second=10)
    assignment = job()
    await coordinator.assign(agent.host_id, assignment)
    await coordinator.wait_for("output", job_id=assignment["job_id"])

    await coordinator.send(agent.host_id, "cancel", {"job_id": assignment["job_id"]})

    await coordinator.wait_for(
        "status", lambda m: m["state"] == "cancelled", job_id=assignment["job_id"]
    )
    await asyncio.sleep(0.3)
    assert await coordinator.states(assignment["job_id"]) == ["started", "streaming", "cancelled"]
    assert not any(o["is_final"] for o in coordinator.of("output", job_id=assignment["job_id"]))


async def test_a_job_over_its_time_limit_fails_with_a_timeout_error(coordinator, start_agent):
    agent = await start_agent(mock_tokens_per_second=10)
    assignment = job(timeout_seconds=0.5)

    await coordinator.assign(agent.host_id, assignment)

    [failed] = await coordinator.wait_for(
        "status", lambda m: m["state"] == "failed", job_id=assignment["job_id"]
    )
    assert failed["error"] == "Timeout: job exceeded 0.5s limit"


async def test_the_configured_time_limit_of_a_runtime_applies(coordinator, start_agent):
    agent = await start_agent(mock_tokens_per_second=10, time_limits={"container": 1})
    assignment = job()

    await coordinator.assign(agent.host_id, assignment)

    [failed] = await coordinator.wait_for(
        "status", lambda m: m["state"] == "failed", job_id=assignment["job_id"]
    )
    assert failed["error"] == "Timeout: job exceeded 1s limit"


async def test_it_renews_the_lease_while_a_job_runs(coordinator, start_agent):
    agent = await start_agent(mock_tokens_per_second=10, lease_interval=0.2)
    assignment = job()

    await coordinator.assign(agent.host_id, assignment)

    leases = await coordinator.wait_for("lease", job_id=assignment["job_id"], count=3)
    assert {k: v for k, v in leases[0].items() if not k.startswith("_")} == {
        "job_id": assignment["job_id"],
        "extend_seconds": 60,
    }
    await coordinator.send(agent.host_id, "cancel", {"job_id": assignment["job_id"]})
    await coordinator.wait_for(
        "status", lambda m: m["state"] == "cancelled", job_id=assignment["job_id"]
    )
    renewed = len(coordinator.of("lease", job_id=assignment["job_id"]))
    await asyncio.sleep(0.5)
    assert len(coordinator.of("lease", job_id=assignment["job_id"])) == renewed


async def test_it_runs_no_more_jobs_at_once_than_its_limit(coordinator, start_agent):
    agent = await start_agent(mock_tokens_per_second=40, max_concurrent_jobs=1)
    first, second = job(), job()

    await coordinator.assign(agent.host_id, first)
    await coordinator.assign(agent.host_id, second)

    await coordinator.succeeded(second["job_id"])
    order = [
        (m["job_id"], m["state"])
        for m in coordinator.messages["status"]
        if m["job_id"] in (first["job_id"], second["job_id"])
    ]
    assert order.index((first["job_id"], "succeeded")) < order.index((second["job_id"], "started"))


async def test_it_reports_its_running_job_in_the_heartbeat(coordinator, start_agent):
    agent = await start_agent(mock_tokens_per_second=10)
    assignment = job()
    await coordinator.assign(agent.host_id, assignment)

    [beat] = await coordinator.wait_for(
        "heartbeat", lambda m: m["active_jobs"] == 1, host_id=agent.host_id
    )

    [metrics] = beat["active_job_metrics"]
    assert metrics["job_id"] == assignment["job_id"]
    assert metrics["job_type"] == "container"
    assert metrics["duration_ms"] >= 0


async def test_a_finished_cargo_is_reported_warm(coordinator, start_agent):
    agent = await start_agent()
    await coordinator.assign(agent.host_id, job(workload_id="llm-chat"))

    [beat] = await coordinator.wait_for(
        "heartbeat", lambda m: m["cache"]["warm_workload_count"] == 1, host_id=agent.host_id
    )

    assert beat["cache"]["warm_workload_ids"] == ["llm-chat"]


async def test_a_job_for_an_unsupported_runtime_fails_clearly(coordinator, start_agent):
    agent = await start_agent()
    assignment = job(runtime_type="diffusers")

    await coordinator.assign(agent.host_id, assignment)

    [failed] = await coordinator.wait_for(
        "status", lambda m: m["state"] == "failed", job_id=assignment["job_id"]
    )
    assert failed["error"] == "Unsupported runtime: diffusers"


async def test_a_redelivered_job_runs_only_once(coordinator, start_agent):
    agent = await start_agent()
    assignment = job()

    await coordinator.assign(agent.host_id, assignment)
    await coordinator.assign(agent.host_id, assignment)

    await coordinator.succeeded(assignment["job_id"])
    await asyncio.sleep(0.3)
    assert await coordinator.states(assignment["job_id"]) == ["started", "streaming", "succeeded"]
    assert (await consumer_info(coordinator, agent.host_id)).num_ack_pending == 0


async def test_a_job_cancelled_before_it_arrives_is_reported_cancelled_and_not_run(
    coordinator, start_agent
):
    agent = await start_agent()
    assignment = job()

    await coordinator.send(agent.host_id, "cancel", {"job_id": assignment["job_id"]})
    await coordinator.assign(agent.host_id, assignment)

    await coordinator.wait_for(
        "status", lambda m: m["state"] == "cancelled", job_id=assignment["job_id"]
    )
    assert coordinator.of("output", job_id=assignment["job_id"]) == []


async def test_a_malformed_assignment_is_skipped_and_the_next_one_runs(coordinator, start_agent):
    agent = await start_agent()
    assignment = job()

    await coordinator.js.publish(f"host.{agent.host_id}.jobs", b"not json", stream="JOBS")
    await coordinator.assign(agent.host_id, assignment)

    await coordinator.succeeded(assignment["job_id"])


async def test_it_runs_the_shipped_wasm_utility(coordinator, start_agent):
    agent = await start_agent()
    assignment = job(
        runtime_type="wasm",
        workload_id="text-wordcount",
        input={"text": "one two\nthree\n"},
        wasm_url="builtin:wordcount",
    )

    await coordinator.assign(agent.host_id, assignment)

    await coordinator.succeeded(assignment["job_id"])
    chunks = [o["chunk"] for o in coordinator.of("output", job_id=assignment["job_id"])]
    assert chunks == ['{"bytes":14,"words":3,"lines":2}\n', ""]


async def test_a_wasm_job_that_exhausts_its_fuel_fails_cleanly(coordinator, start_agent):
    agent = await start_agent(wasm_fuel=20_000)
    assignment = job(runtime_type="wasm", input={"text": "word " * 20_000})

    await coordinator.assign(agent.host_id, assignment)

    [failed] = await coordinator.wait_for(
        "status", lambda m: m["state"] == "failed", job_id=assignment["job_id"]
    )
    assert failed["error"] == "WASM fuel exhausted (limit 20000)"
    follow_up = job(runtime_type="wasm", input="still alive")
    await coordinator.assign(agent.host_id, follow_up)
    await coordinator.succeeded(follow_up["job_id"])
