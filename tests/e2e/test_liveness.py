"""Island liveness end to end: heartbeats of the real agent take its Island online; a
killed agent goes offline after HEARTBEAT_OFFLINE_SECONDS and, once silent for longer than
DISCONNECT_PENALTY_AFTER_SECONDS, loses karma; a graceful stop goes offline at once and
costs nothing. (E2E_SETTINGS: offline after 2 s, penalty after 3 s.)"""

import time

from compute.models import Island, KarmaEvent
from compute.services.karma import DISCONNECTION
from compute.tasks import sweep_liveness
from tests.e2e.conftest import E2E_SETTINGS, eventually, online, pair

OFFLINE_AFTER = E2E_SETTINGS["HEARTBEAT_OFFLINE_SECONDS"]
PENALTY_AFTER = E2E_SETTINGS["DISCONNECT_PENALTY_AFTER_SECONDS"]


def api_status(e2e, key: str, host_id: str) -> str:
    with e2e.client(key) as client:
        response = client.get(f"/hosts/{host_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]["status"]


def disconnections(island_id: str) -> int:
    return KarmaEvent.objects.filter(island_id=island_id, reason=DISCONNECTION).count()


def online_with_a_witness(agent, user, name: str) -> tuple:
    """The agent ``name`` of ``user`` paired and online, and a second one, the witness,
    that keeps the coordinator "hearing" Islands during the test."""
    witness = agent("witness")
    pair(witness, user)
    island_agent = agent(name)
    pair(island_agent, user)
    online(island_agent)
    online(witness)
    return island_agent, witness


def test_heartbeats_take_an_island_online_and_a_killed_agent_offline_then_online(
    e2e, account, agent
):
    user, key = account
    island_agent, _ = online_with_a_witness(agent, user, "flaky")
    host_id = island_agent.host_id
    assert api_status(e2e, key, host_id) == "online"

    island_agent.kill()
    killed_at = time.monotonic()
    # Exact on read: the API says offline once the last heartbeat is too old, sweep or not.
    eventually(lambda: api_status(e2e, key, host_id) == "offline", timeout=OFFLINE_AFTER + 5)
    assert time.monotonic() - killed_at >= OFFLINE_AFTER - 0.5
    assert sweep_liveness()["offline"] >= 1
    assert Island.objects.get(pk=host_id).status == "offline"
    assert disconnections(host_id) == 0  # not yet: offline is not yet a long disconnection

    time.sleep(max(0.0, PENALTY_AFTER + 0.3 - (time.monotonic() - killed_at)))
    sweep_liveness()
    assert disconnections(host_id) == 1
    island = Island.objects.get(pk=host_id)
    assert island.karma == -E2E_SETTINGS["DISCONNECT_KARMA_PENALTY"]
    sweep_liveness()
    assert disconnections(host_id) == 1  # once per disconnection

    island_agent.start()
    online(island_agent)
    assert api_status(e2e, key, host_id) == "online"
    assert not island_agent.printed("Pairing code")


def test_a_graceful_stop_goes_offline_at_once_without_a_penalty(e2e, account, agent):
    user, key = account
    island_agent, witness = online_with_a_witness(agent, user, "tidy")
    host_id = island_agent.host_id

    assert island_agent.stop() == 0
    stopped_at = time.monotonic()
    island = eventually(
        lambda: Island.objects.filter(pk=host_id, status="offline", offline_graceful=True).first(),
        timeout=5,
    )
    assert time.monotonic() - stopped_at < OFFLINE_AFTER  # the offline heartbeat, no timeout
    assert island.went_offline_at is not None
    assert api_status(e2e, key, host_id) == "offline"

    # Past the penalty threshold, with the witness still heard: no karma lost.
    time.sleep(PENALTY_AFTER + 0.3)
    assert Island.objects.filter(pk=witness.host_id, status="online").exists()
    sweep_liveness()
    assert disconnections(host_id) == 0
    assert Island.objects.get(pk=host_id).karma == 0
