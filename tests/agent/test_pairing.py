"""Pairing from the Island's side: the code, host.{id}.paired, and "already paired"."""

import json

from island_cli.agent import state


async def test_an_unpaired_island_prints_its_pairing_code_and_the_pair_url(
    coordinator, start_agent
):
    agent = await start_agent()

    await agent.wait_for_line("Pairing code: A3X9K2")
    await agent.wait_for_line("Enter this code at http://portal.test/pair")
    assert coordinator.pairing_requests == [{"host_id": agent.host_id}]


async def test_it_learns_its_pairing_from_the_paired_subject_and_saves_it(coordinator, start_agent):
    agent = await start_agent()
    await agent.wait_for_line("Pairing code:")

    await coordinator.send(
        agent.host_id,
        "paired",
        {"host_id": agent.host_id, "account_id": 42, "paired_at": "2026-03-14T09:00:00Z"},
    )

    line = await agent.wait_for_line("Paired with account 42")
    assert "this Island is ready" in line
    assert agent.state() == {
        "host_id": agent.host_id,
        "paired": True,
        "account_id": 42,
        "paired_at": "2026-03-14T09:00:00Z",
    }


async def test_it_marks_itself_paired_when_the_coordinator_says_already_paired(
    coordinator, start_agent
):
    coordinator.pairing_replies = [{"success": False, "error": "already paired"}]
    agent = await start_agent()

    await agent.wait_for_line("already paired")

    assert agent.state()["paired"] is True
    assert not any("Pairing code" in line for line in agent.lines)


async def test_a_paired_island_does_not_ask_for_a_code(coordinator, start_agent, tmp_path):
    host_id = "0b1c2d3e-0000-4000-8000-000000000001"
    state.save(
        tmp_path / "state", state.State(host_id=host_id, paired=True, account_id=7, paired_at="x")
    )

    await start_agent(host_id=host_id)
    await coordinator.wait_for("heartbeat", host_id=host_id)

    assert coordinator.pairing_requests == []


async def test_it_asks_for_a_new_code_when_the_old_one_expires(coordinator, start_agent):
    coordinator.pairing_replies = [
        {
            "success": True,
            "code": "AAAAAA",
            "expires_in_seconds": 0.3,
            "pair_url": "http://portal.test/pair",
        },
        {
            "success": True,
            "code": "BBBBBB",
            "expires_in_seconds": 600,
            "pair_url": "http://portal.test/pair",
        },
    ]
    agent = await start_agent()

    await agent.wait_for_line("Pairing code: BBBBBB")
    assert len(coordinator.pairing_requests) == 2


async def test_it_generates_a_host_id_on_first_start_and_keeps_it(coordinator, start_agent):
    first = await start_agent(host_id=None)
    stored = first.state()["host_id"]
    [register] = await coordinator.wait_for("coordinator.hosts.register", host_id=stored)
    await first.kill()

    second = await start_agent(host_id=None)
    await coordinator.wait_for("coordinator.hosts.register", host_id=stored, count=2)

    assert second.state()["host_id"] == stored == register["host_id"]
    assert json.loads((second.state_dir / "state.json").read_text())["paired"] is False
