"""``island agent --simulate N``: many Islands on one connection, which only the shared
field user may do (an Island's own key speaks for its own Island only)."""

from .coordinator import job


async def test_simulate_3_registers_3_islands_that_send_heartbeats(coordinator, start_agent):
    agent = await start_agent("--simulate", "3", field=True)

    registers = await coordinator.wait_for(
        "register", lambda m: m["name"].startswith("test-island-sim-"), count=3
    )
    assert {m["_subject"] for m in registers} == {"field.coordinator.hosts.register"}
    host_ids = {m["host_id"] for m in registers}
    assert len(host_ids) == 3
    assert agent.host_id not in host_ids
    for host_id in host_ids:
        [beat] = await coordinator.wait_for("heartbeat", host_id=host_id)
        assert beat["status"] == "online"
    assert coordinator.pairing_requests == []
    await agent.wait_for_line("registered 3 Island(s)")


async def test_a_simulated_island_runs_a_job_with_the_mock_runtime(coordinator, start_agent):
    await start_agent("--simulate", "2", field=True)
    [register] = await coordinator.wait_for("register", lambda m: m["name"] == "test-island-sim-2")
    assignment = job()

    await coordinator.assign(register["host_id"], assignment, field=True)

    done = await coordinator.succeeded(assignment["job_id"])
    assert done["usage"]["completion_tokens"] > 0


async def test_simulated_islands_keep_their_host_ids_across_restarts(coordinator, start_agent):
    host_id = "3f0c2d3e-0000-4000-8000-000000000002"
    first = await start_agent("--simulate", "2", host_id=host_id, field=True)
    before = await coordinator.wait_for("register", lambda m: "-sim-" in m["name"], count=2)
    first.signal()
    await first.wait()

    await start_agent("--simulate", "2", host_id=host_id, field=True)
    after = await coordinator.wait_for("register", lambda m: "-sim-" in m["name"], count=4)

    assert {m["host_id"] for m in before} == {m["host_id"] for m in after[2:]}


async def test_simulate_with_an_islands_own_key_is_refused_in_one_line(coordinator, start_agent):
    agent = await start_agent("--simulate", "2", paired=False, wait_connected=False)

    assert await agent.wait() == 2
    assert agent.lines == []
    [error] = agent.errors
    assert error.startswith("Error: --simulate")
    assert "field user" in error
    assert coordinator.pairing_requests == []
