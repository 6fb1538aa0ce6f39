"""Pairing from the Island's side: the code, "already paired", and host.{id}.paired.

An Island with its own key asks on ``coordinator.hosts.pairing.{key}`` on every
connection, saying what a registration would (it may not register before it is paired);
a field Island asks on ``coordinator.hosts.pairing`` while it is not paired, and learns
its pairing from ``host.{id}.paired``. (tests/agent/test_keys.py: pairing and unpairing
of a running Island with a key.)"""

import json

from island_cli.agent import state

from .coordinator import ACCOUNT_ID, PAIRED_AT, fields_of


async def test_an_unpaired_island_prints_its_pairing_code_and_the_pair_url(
    coordinator, start_agent
):
    agent = await start_agent(paired=False)

    await agent.wait_for_line("Pairing code: A3X9K2")
    await agent.wait_for_line("Enter this code at http://portal.test/pair")
    [request] = coordinator.pairing_requests
    assert request["_subject"] == f"coordinator.hosts.pairing.{agent.key}"
    assert set(fields_of(request)) == {"host_id", "capabilities", "version", "name"}
    assert request["host_id"] == agent.host_id
    assert request["name"] == "test-island"
    assert request["capabilities"]["region"] == "eu-west"


async def test_it_marks_itself_paired_when_the_coordinator_says_already_paired(
    coordinator, start_agent
):
    agent = await start_agent()

    await agent.wait_for_line("already paired")

    assert agent.state() == {
        "host_id": agent.host_id,
        "paired": True,
        "account_id": ACCOUNT_ID,
        "paired_at": PAIRED_AT,
    }
    assert not any("Pairing code" in line for line in agent.lines)


async def test_a_paired_island_with_a_key_asks_once_per_connection_and_gets_no_code(
    coordinator, start_agent, tmp_path
):
    host_id = "0b1c2d3e-0000-4000-8000-000000000001"
    state.save(
        tmp_path / "state", state.State(host_id=host_id, paired=True, account_id=7, paired_at="x")
    )

    await start_agent(host_id=host_id)
    await coordinator.wait_for("heartbeat", host_id=host_id, count=5)

    assert [r["host_id"] for r in coordinator.pairing_requests] == [host_id]


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
    agent = await start_agent(paired=False)

    await agent.wait_for_line("Pairing code: BBBBBB")
    assert len(coordinator.pairing_requests) == 2


async def test_it_generates_a_host_id_on_first_start_and_keeps_it(coordinator, start_agent):
    first = await start_agent(host_id=None, paired=False)
    stored = first.state()["host_id"]
    await first.wait_for_line("Pairing code:")
    await first.kill()

    second = await start_agent(host_id=None, paired=False)
    await second.wait_for_line("Pairing code:")

    assert [r["host_id"] for r in coordinator.pairing_requests] == [stored, stored]
    assert second.state()["host_id"] == stored
    assert json.loads((second.state_dir / "state.json").read_text())["paired"] is False


# -- field Islands (the shared field user) -------------------------------------------


async def test_a_field_island_asks_for_a_code_and_learns_its_pairing_from_the_paired_subject(
    coordinator, start_agent
):
    agent = await start_agent(field=True)
    await agent.wait_for_line("Pairing code: A3X9K2")
    [request] = coordinator.pairing_requests
    assert request["_subject"] == "field.coordinator.hosts.pairing"
    assert fields_of(request) == {"host_id": agent.host_id}

    await coordinator.send(
        agent.host_id,
        "paired",
        {"host_id": agent.host_id, "account_id": 42, "paired_at": "2026-03-14T09:00:00Z"},
        field=True,
    )

    line = await agent.wait_for_line("Paired with account 42")
    assert "this Island is ready" in line
    assert agent.state() == {
        "host_id": agent.host_id,
        "paired": True,
        "account_id": 42,
        "paired_at": "2026-03-14T09:00:00Z",
    }


async def test_a_field_island_marks_itself_paired_when_the_coordinator_says_already_paired(
    coordinator, start_agent
):
    coordinator.pairing_replies = [{"success": False, "error": "already paired"}]
    agent = await start_agent(field=True)

    await agent.wait_for_line("already paired")

    assert agent.state()["paired"] is True
    assert not any("Pairing code" in line for line in agent.lines)


async def test_a_paired_field_island_does_not_ask_for_a_code(coordinator, start_agent, tmp_path):
    host_id = "0b1c2d3e-0000-4000-8000-000000000002"
    state.save(
        tmp_path / "state", state.State(host_id=host_id, paired=True, account_id=7, paired_at="x")
    )

    await start_agent(host_id=host_id, field=True)
    await coordinator.wait_for("heartbeat", host_id=host_id)

    assert coordinator.pairing_requests == []
