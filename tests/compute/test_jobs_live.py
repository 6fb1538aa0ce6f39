"""A job through the real ASGI app: submitted over HTTP, assigned on JetStream."""

import pytest

from tests.compute.jobs_support import assignments, island
from tests.factories import CargoFactory


@pytest.mark.usefixtures("streams")
def test_a_submitted_job_reaches_the_islands_consumer_and_can_be_cancelled(live, api_key):
    CargoFactory(slug="live-chat", runtime_type="container")
    host = island()
    with live.client(api_key) as client:
        created = client.post("/jobs", json={"workload": "live-chat", "input": {"prompt": "Hi"}})
        assert created.status_code == 201, created.text
        job = created.json()["data"]
        assert (job["status"], job["island_id"]) == ("running", str(host.pk))
        [payload] = assignments(host.pk, timeout=5)
        assert payload["job_id"] == job["id"]
        assert client.get(f"/jobs/{job['id']}").json()["data"]["status"] == "running"
        cancelled = client.delete(f"/jobs/{job['id']}")
        assert cancelled.json()["data"]["status"] == "cancelled"
        assert client.delete(f"/jobs/{job['id']}").status_code == 409
