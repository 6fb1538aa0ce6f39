"""An Island with its own key: what it may do unpaired, and how it learns that it was
paired or unpaired. The coordinator changes what the key may do (the auth callout's
answer) and ends its connection (the system account's KICK, as pairing.identities does);
the agent reconnects, asks again, and acts on the answer."""

import asyncio
import stat

import pytest
from island_cli.agent.identity import SEED_FILE

from sail import keys

from .conftest import key_of
from .coordinator import ACCOUNT_ID, job, kick

NEW_CODE = {
    "success": True,
    "code": "N3WC0D",
    "expires_in_seconds": 600,
    "pair_url": "http://portal.test/pair",
}


async def test_an_unpaired_island_publishes_nothing_but_its_pairing_request(
    coordinator, start_agent
):
    agent = await start_agent(paired=False)

    await agent.wait_for_line("Connected; waiting to be paired")
    await agent.wait_for_line("Pairing code: A3X9K2")
    await asyncio.sleep(1.0)  # five heartbeat intervals

    assert len(coordinator.pairing_requests) == 1
    assert coordinator.about(agent.host_id) == []
    assert agent.refusals() == []


async def test_once_paired_it_reconnects_hears_already_paired_and_gets_ready(
    coordinator, start_agent, admissions
):
    agent = await start_agent(paired=False)
    await agent.wait_for_line("Pairing code: A3X9K2")

    admissions.paired[agent.key] = agent.host_id
    await kick(agent.key)

    await agent.wait_for_line(f"Paired with account {ACCOUNT_ID} — this Island is ready")
    [register] = await coordinator.wait_for("register", host_id=agent.host_id)
    assert register["_subject"] == f"host.{agent.host_id}.register"
    await coordinator.wait_for(
        "heartbeat", lambda m: m["_n"] > register["_n"], host_id=agent.host_id, count=3
    )
    assignment = job()
    await coordinator.assign(agent.host_id, assignment)
    await coordinator.succeeded(assignment["job_id"])
    assert len(coordinator.of("register", host_id=agent.host_id)) == 1
    assert agent.state()["paired"] is True
    assert agent.state()["account_id"] == ACCOUNT_ID


async def test_once_unpaired_it_prints_its_new_code_and_stops_heartbeating(
    coordinator, start_agent, admissions
):
    agent = await start_agent()
    await coordinator.wait_for("heartbeat", host_id=agent.host_id)
    agent.refusals_expected = True  # what it was doing as the connection ended
    coordinator.pairing_replies = [NEW_CODE]

    del admissions.paired[agent.key]
    await kick(agent.key)

    await agent.wait_for_line("This Island is no longer paired with an account")
    await agent.wait_for_line("Pairing code: N3WC0D")
    assert agent.state()["paired"] is False
    await asyncio.sleep(0.5)
    beats, refusals = len(coordinator.of("heartbeat", host_id=agent.host_id)), agent.refusals()
    await asyncio.sleep(1.0)  # five heartbeat intervals
    assert len(coordinator.of("heartbeat", host_id=agent.host_id)) == beats
    assert agent.refusals() == refusals, "it still tries to work"


async def test_it_is_ready_again_when_paired_anew(coordinator, start_agent, admissions):
    agent = await start_agent()
    await coordinator.wait_for("register", host_id=agent.host_id)
    agent.refusals_expected = True
    coordinator.pairing_replies = [NEW_CODE]
    del admissions.paired[agent.key]
    await kick(agent.key)
    await agent.wait_for_line("Pairing code: N3WC0D")

    admissions.paired[agent.key] = agent.host_id
    await kick(agent.key)

    await agent.wait_for_line(f"Paired with account {ACCOUNT_ID} — this Island is ready")
    await coordinator.wait_for("register", host_id=agent.host_id, count=2)
    assignment = job()
    await coordinator.assign(agent.host_id, assignment)
    await coordinator.succeeded(assignment["job_id"])


# -- its key ---------------------------------------------------------------------------


async def test_it_makes_its_key_on_first_start_readable_by_its_owner_only(coordinator, start_agent):
    agent = await start_agent(make_key=False, paired=False)
    await agent.wait_for_line("Pairing code:")

    path = agent.state_dir / SEED_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [request] = coordinator.pairing_requests
    assert request["_subject"] == f"coordinator.hosts.pairing.{key_of(agent.state_dir)}"


async def test_it_keeps_its_key_across_restarts(coordinator, start_agent):
    first = await start_agent(make_key=False, paired=False)
    await first.wait_for_line("Pairing code:")
    seed = (first.state_dir / SEED_FILE).read_text()
    await first.kill()

    second = await start_agent(make_key=False, paired=False)
    await second.wait_for_line("Pairing code:")

    assert (second.state_dir / SEED_FILE).read_text() == seed
    key = keys.public_key(seed.strip())
    assert [r["_subject"] for r in coordinator.pairing_requests] == [
        f"coordinator.hosts.pairing.{key}"
    ] * 2


async def test_a_seed_file_readable_by_others_is_made_private(coordinator, start_agent, tmp_path):
    (tmp_path / "state").mkdir()
    path = tmp_path / "state" / SEED_FILE
    path.write_text(keys.new_seed() + "\n")
    path.chmod(0o644)

    agent = await start_agent(make_key=False)

    await agent.wait_for_line("ready")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def flipped(seed: str) -> str:
    """The seed with one character changed, as a damaged disk might leave it."""
    return seed[:20] + ("A" if seed[20] != "A" else "B") + seed[21:]


@pytest.mark.parametrize(
    "damage",
    [
        lambda seed: "",
        lambda seed: "not a seed at all",
        lambda seed: seed[:30],
        flipped,
        lambda seed: keys.new_seed(keys.ACCOUNT),
    ],
    ids=["empty", "garbage", "truncated", "one-character-changed", "an-account-seed"],
)
async def test_a_damaged_seed_file_makes_it_exit_with_code_2_and_one_error_line(
    coordinator, start_agent, tmp_path, damage
):
    (tmp_path / "state").mkdir()
    path = tmp_path / "state" / SEED_FILE
    path.write_text(damage(keys.new_seed()) + "\n")
    path.chmod(0o600)

    agent = await start_agent(make_key=False, paired=False, wait_connected=False)

    assert await agent.wait() == 2
    assert agent.lines == []
    [error] = agent.errors
    assert error.startswith("Error: ")
    assert str(path) in error
    assert coordinator.pairing_requests == []


async def test_it_goes_on_when_its_credentials_expire_and_are_issued_anew(
    coordinator, start_agent, admissions
):
    """GIVEN admissions that last 2 s (the server disconnects the Island then) THEN the
    agent authenticates again by itself and keeps heartbeating and taking jobs."""
    admissions.ttl_seconds = 2
    agent = await start_agent()
    await coordinator.wait_for("heartbeat", host_id=agent.host_id)
    for _ in range(100):  # two expiries, each followed by a new admission
        if admissions.admitted[agent.key] >= 3:
            break
        await asyncio.sleep(0.1)
    assert admissions.admitted[agent.key] >= 3
    beats = len(coordinator.of("heartbeat", host_id=agent.host_id))
    await coordinator.wait_for("heartbeat", host_id=agent.host_id, count=beats + 3)
    assignment = job()
    await coordinator.assign(agent.host_id, assignment)
    await coordinator.succeeded(assignment["job_id"])
    assert agent.refusals() == []
