"""An Island whose registration the coordinator lost (a stream or bridge outage, a
coordinator reset) becomes usable again without a restart of the Island: its heartbeats
reveal it, the coordinator asks it to register again (``host.{id}.reregister``), and the
reference agent does so at once."""

from compute.models import Island
from pairing.models import PairingCode
from tests.e2e.conftest import pair, registered


def test_an_island_whose_registration_was_lost_registers_again_by_itself(e2e, account, agent):
    user, _ = account
    island_agent = agent("forgotten")
    pair(island_agent, user)
    # GIVEN the coordinator lost what the registration said (the row pairing made stays)
    Island.objects.filter(pk=island_agent.host_id).update(capabilities={}, region="")

    # THEN the next heartbeats bring a new registration, with no restart of the agent
    island = registered(island_agent)
    assert island.region == "eu-west"
    assert island.capabilities["cpu_cores"] >= 1
    assert island_agent.running
    assert island_agent.printed("Paired with account")


def test_an_island_the_coordinator_never_heard_register_registers_when_it_heartbeats(
    e2e, account, agent
):
    user, _ = account
    island_agent = agent("unknown")
    pair(island_agent, user)  # a paired agent asks for no code meanwhile
    # GIVEN a coordinator that holds no row of it at all (its database was reset)
    PairingCode.objects.filter(island_id=island_agent.host_id).delete()
    Island.objects.filter(pk=island_agent.host_id).delete()

    island = registered(island_agent)
    assert island.name == "unknown"
