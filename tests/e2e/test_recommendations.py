"""The agent's preload recommendations against the live server: with
``coordinator.api_url`` set it polls ``GET /api/v1/island/recommendations?host_id=…``
every ``recommendations_interval`` seconds and prints one line per recommendation."""

import re
import time

from django.utils import timezone
from island_cli.agent.recommendations import describe

from compute.models import Cargo, Job
from tests.e2e.conftest import online, pair, registered


def recommendations(e2e, host_id: str) -> list[dict]:
    with e2e.client() as client:
        response = client.get("/island/recommendations", params={"host_id": host_id})
    assert response.status_code == 200, response.text
    return response.json()["recommendations"]


def test_the_agent_polls_recommendations_and_prints_one_line_per_cargo(e2e, account, agent):
    user, _ = account
    island_agent = agent("preloader", recommendations_interval=0.5)
    pair(island_agent, user)
    online(island_agent)  # its runtimes (from heartbeats) say which Cargos it serves

    served = recommendations(e2e, island_agent.host_id)
    assert served, "the mock Island serves some seed Cargos"
    for item in served:
        island_agent.wait_for_line("^" + re.escape(describe(item)) + "$")

    # Demand changes; the next polls show it.
    cargo = Cargo.objects.get(slug=served[-1]["workload_slug"])
    now = timezone.now()
    for _ in range(3):
        Job.objects.create(user=user, cargo=cargo, status="completed", completed_at=now)
    # demand_score = queued * 10 + recent completions * 2
    island_agent.wait_for_line(rf"^Preload recommendation: {cargo.slug} \(.*\) · demand 6 \(0 ")
    assert recommendations(e2e, island_agent.host_id)[0]["workload_slug"] == cargo.slug


def test_an_agent_without_an_api_url_does_not_poll(e2e, agent):
    island_agent = agent("quiet", coordinator={"api_url": None}, recommendations_interval=0.2)
    registered(island_agent)
    time.sleep(1)
    assert not island_agent.printed("Preload recommendation")
