"""Real answers of the job, catalog, host, market and ledger endpoints have the shapes
the OpenAPI document gives them (a client generated from the document can read them)."""

import schemathesis

from compute.models import KarmaEvent
from compute.services.market import snapshot_rates
from pairing.mobile import start_mobile_session
from portal import services
from tests.factories import CargoFactory, IslandFactory


def test_the_answers_have_their_documented_shapes(live, user):
    key = services.create_api_key(user=user, name="documented")[1]
    CargoFactory(slug="llm-chat", input_schema={"type": "object"})
    island = IslandFactory(owner=user, max_concurrent_jobs=0)  # the job waits, queued
    KarmaEvent.objects.create(island=island, delta=1, reason="uptime", karma_after=1,
                              pending_minutes_after=0)  # fmt: skip
    api = schemathesis.openapi.from_url(f"{live.url}/api/v1/schema")
    checked = []

    with live.client(key) as client:

        def answer(method: str, path: str, template: str | None = None, **kwargs):
            response = client.request(method, path, **kwargs)
            assert response.status_code < 300, (path, response.text)
            api[f"/api/v1{template or path}"][method].validate_response(response)
            checked.append(f"{method} {template or path}")
            return response.json()

        job = answer("POST", "/jobs", json={"workload": "llm-chat", "input": {"prompt": "hi"}})
        job_id = job["data"]["id"]
        answer("GET", "/jobs")
        answer("GET", f"/jobs/{job_id}", "/jobs/{job_id}")
        answer("GET", f"/jobs/{job_id}/output", "/jobs/{job_id}/output")
        cancelled = answer("DELETE", f"/jobs/{job_id}", "/jobs/{job_id}")
        answer("GET", "/cargos")
        answer("GET", "/workloads")
        answer("GET", "/workloads/llm-chat", "/workloads/{slug}")
        answer("GET", "/hosts")
        answer("GET", f"/hosts/{island.pk}", "/hosts/{host_id}")
        answer("GET", f"/hosts/{island.pk}/karma", "/hosts/{host_id}/karma")
        history = answer(
            "GET", f"/hosts/{island.pk}/karma/history", "/hosts/{host_id}/karma/history"
        )
        asks = {"host_id": str(island.pk), "prices": {"llm-chat": "0.02"}}
        answer("POST", "/market/asking-prices", json=asks)
        snapshot_rates()
        answer("GET", "/market/rates")
        answer("GET", "/market/rates/llm-chat", "/market/rates/{slug}")
        rows = answer("GET", "/market/history/llm-chat", "/market/history/{slug}")
        answer("POST", "/market/bids", json={"workload": "llm-chat", "bid": "0.05"})
        answer("GET", "/market/bids")
        answer("GET", "/network/stats")
        answer("GET", f"/island/recommendations?host_id={island.pk}", "/island/recommendations")
        ledger = answer("GET", "/account/ledger")
        code = start_mobile_session(user=user)[1]
        body = {"code": code, "device_name": "Pixel 8", "platform": "android"}
        answer("POST", "/pairing/mobile/claim", json=body)

    assert cancelled["data"]["status"] == "cancelled"
    assert history["data"][0]["reason"] == "uptime"
    assert rows["data"][0]["avg_price"] == "0.020000"
    assert {entry["kind"] for entry in ledger["data"]} >= {"grant", "hold", "release"}
    assert len(checked) == 22
