"""A scrape of ``/metrics`` after a job: what the web process, the worker and the bridge
counted for it, summed across processes (core.metrics), and the levels read at the
scrape."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from compute.models import Job
from tests.e2e import conftest as e2e_conftest
from tests.e2e.conftest import eventually, online, pair
from tests.stack_fixtures import Stack

TOKEN = "scrape-" + "y" * 40
Samples = dict[tuple[str, frozenset], float]


@pytest.fixture(scope="module")
def _e2e_processes(django_db_setup, django_db_blocker) -> Iterator[Stack]:
    """The e2e coordinator, with a METRICS_TOKEN."""
    with e2e_conftest.coordinator(e2e_conftest._env() | {"METRICS_TOKEN": TOKEN}) as stack:
        yield stack


def scrape(e2e: Stack) -> Samples:
    response = httpx.get(f"{e2e.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: Any) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_a_scrape_after_a_job_shows_what_every_process_counted_for_it(e2e, account, agent):
    """GIVEN an Island online WHEN a job is submitted and completes THEN a scrape shows,
    against one before: the request (web), the submission and the hold (web), the
    dispatch, the first token, the job's end and its capture (worker), heartbeats' lag
    (worker, from the bridge's batches), and the levels at the scrape."""
    user, key = account
    island_agent = agent("metered")
    pair(island_agent, user)
    online(island_agent)
    before = scrape(e2e)

    with e2e.client(key) as client:
        body = {"workload": "llm-chat", "input": {"messages": [{"role": "user", "content": "hi"}]}}
        response = client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    job_id = response.json()["data"]["id"]
    eventually(lambda: Job.objects.filter(pk=job_id, status=Job.Status.COMPLETED).exists())
    # The job's end, and a heartbeat stored since the first scrape (every 0.3 s).
    later = ("archipelago_jobs_ended_total", "archipelago_heartbeat_lag_seconds_count")
    after = eventually(
        lambda: (s := scrape(e2e)) and all(total(s, n) > total(before, n) for n in later) and s
    )

    def moved(name: str, **labels: Any) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("archipelago_http_requests_total", route="/api/v1/jobs", status="201") == 1
    assert moved("archipelago_http_request_duration_seconds_count", route="/api/v1/jobs") == 1
    assert moved("archipelago_jobs_submitted_total", cargo="llm-chat") == 1
    assert moved("archipelago_dispatch_decisions_total", outcome="assigned") == 1
    assert moved("archipelago_queue_wait_seconds_count") == 1
    assert moved("archipelago_time_to_first_token_seconds_count") == 1
    assert moved("archipelago_jobs_ended_total", state="completed", cargo="llm-chat") == 1
    for kind in ("hold", "capture", "earning"):
        assert moved("archipelago_ledger_movements_total", kind=kind) == 1, kind
    assert moved("archipelago_heartbeat_lag_seconds_count") > 0
    assert total(after, "archipelago_islands_online") == 1
    assert total(after, "archipelago_jobs") == 0  # none left running
    assert ("archipelago_jetstream_consumer_pending", frozenset(
        {("stream", "ISLANDS"), ("consumer", "coordinator-islands")}
    )) in after  # fmt: skip
