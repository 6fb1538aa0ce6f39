"""The parse functions of the bridge (the apps' handlers modules): what they accept,
normalize and refuse."""

import uuid

import orjson
import pytest

from compute.handlers import parse_heartbeat, parse_register
from pairing.handlers import pairing_reply
from sail.bridge import ping_reply
from sail.schemas import Invalid
from tests.sail import messages


@pytest.fixture
def host_id() -> str:
    """A fresh Island host_id."""
    return str(uuid.uuid4())


def test_it_turns_a_full_heartbeat_into_a_record(host_id):
    msg = messages.incoming(f"host.{host_id}.heartbeat", messages.heartbeat(host_id))
    record = parse_heartbeat(msg)
    assert record["host_id"] == host_id
    assert record["received_at"] == msg.received_at.timestamp()
    assert record["status"] == "online"
    assert record["warm_workloads"] == ["llama-3-8b", 7]
    assert record["runtimes"] == ["container", "llmcpp", "wasm"]
    assert record["max_concurrent_jobs"] == 2
    assert record["asking_prices"] == {"llama-3-8b": "0.02", "_default": "0.01"}
    assert set(record["metrics"]) == {
        "system", "gpus", "active_job_metrics", "cache", "performance_estimates", "timestamp"
    }  # fmt: skip
    assert record["metrics"]["gpus"][0]["temperature_c"] == 61


def test_it_accepts_a_minimal_heartbeat_and_leaves_missing_sections_unknown(host_id):
    payload = {"host_id": host_id, "status": "online", "active_jobs": 0, "timestamp": 1}
    record = parse_heartbeat(messages.incoming(f"host.{host_id}.heartbeat", payload))
    assert record["warm_workloads"] is None
    assert record["asking_prices"] is None
    assert record["runtimes"] is None
    assert record["metrics"] == {"timestamp": 1}


def test_it_ignores_unknown_fields(host_id):
    payload = messages.heartbeat(
        host_id, future_field={"x": 1}, system={"cpu_percent": 1, "npu": 3}
    )
    record = parse_heartbeat(messages.incoming(f"host.{host_id}.heartbeat", payload))
    assert record["metrics"]["system"] == {"cpu_percent": 1}


def test_a_graceful_goodbye_is_an_offline_record(host_id):
    payload = messages.heartbeat(host_id, status="offline", active_jobs=0)
    assert (
        parse_heartbeat(messages.incoming(f"host.{host_id}.heartbeat", payload))["status"]
        == "offline"
    )


def test_it_drops_asking_prices_that_are_not_numbers(host_id):
    prices = {"a": "0.5", "b": "cheap", "c": "-1", "d": "NaN", "e": "1e400"}
    payload = messages.heartbeat(host_id, asking_prices=prices)
    record = parse_heartbeat(messages.incoming(f"host.{host_id}.heartbeat", payload))
    assert record["asking_prices"] == {"a": "0.5"}


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"status": "online"}',
        b'{"host_id": "not-a-uuid"}',
        b'{"host_id": "%(id)s", "active_jobs": "three"}',
        b'{"host_id": "%(id)s", "active_jobs": -1}',
        b'{"host_id": "%(id)s", "active_jobs": 99999999999}',
        b'{"host_id": "%(id)s", "gpus": {"index": 0}}',
        b'{"host_id": "%(id)s", "system": {"cpu_percent": "hot"}}',
        b'{"host_id": "%(id)s", "asking_prices": {"a": 1}}',
        b'{"host_id": "%(id)s", "cache": {"warm_workload_ids": "llama"}}',
    ],
    ids=lambda p: p.decode()[:40],
)
def test_it_refuses_heartbeats_that_break_the_protocol(host_id, payload):
    data = payload.replace(b"%(id)s", host_id.encode())
    with pytest.raises(Invalid):
        parse_heartbeat(messages.incoming(f"host.{host_id}.heartbeat", data))


def test_it_refuses_a_heartbeat_for_another_host_than_its_subject(host_id):
    payload = messages.heartbeat(str(uuid.uuid4()))
    with pytest.raises(Invalid, match="does not match"):
        parse_heartbeat(messages.incoming(f"host.{host_id}.heartbeat", payload))


def test_it_normalizes_upper_case_host_ids(host_id):
    payload = messages.heartbeat(host_id.upper())
    record = parse_heartbeat(messages.incoming(f"host.{host_id.upper()}.heartbeat", payload))
    assert record["host_id"] == host_id


def test_it_turns_a_registration_into_a_record(host_id):
    msg = messages.incoming("coordinator.hosts.register", messages.register(host_id, name="attic"))
    record = parse_register(msg)
    assert record["host_id"] == host_id
    assert record["region"] == "eu-west"
    assert record["agent_version"] == "0.9.1"
    assert record["name"] == "attic"
    assert record["capabilities"]["gpu_vram_mb"] == 24576


@pytest.mark.parametrize(
    "payload",
    [b"{}", b'{"host_id": 5}', b'{"host_id": "%(id)s", "capabilities": {"cpu_cores": "many"}}'],
)
def test_it_refuses_registrations_that_break_the_protocol(host_id, payload):
    data = payload.replace(b"%(id)s", host_id.encode())
    with pytest.raises(Invalid):
        parse_register(messages.incoming("coordinator.hosts.register", data))


def test_it_answers_a_ping_with_a_timestamp():
    assert ping_reply(b"anything")["pong"] is True


def test_it_answers_a_malformed_pairing_request_with_an_error():
    reply = pairing_reply(b'{"host": 1}')
    assert reply["success"] is False
    assert "invalid pairing request" in reply["error"]


def test_it_passes_a_pairing_request_to_the_pairing_service(host_id, monkeypatch):
    calls = []

    def fake_request_pairing_code(host: str, *, key=None, registration=None) -> dict:
        calls.append(host)
        return {"success": True, "code": "A3X9K2"}

    monkeypatch.setattr("pairing.services.request_pairing_code", fake_request_pairing_code)
    reply = pairing_reply(orjson.dumps({"host_id": host_id}))
    assert reply == {"success": True, "code": "A3X9K2"}
    assert calls == [host_id]


def test_a_failing_pairing_service_gets_a_polite_error(host_id, monkeypatch):
    def broken(host: str, **_) -> dict:
        raise RuntimeError("database down")

    monkeypatch.setattr("pairing.services.request_pairing_code", broken)
    reply = pairing_reply(orjson.dumps({"host_id": host_id}))
    assert reply == {"success": False, "error": "pairing is unavailable right now, try again later"}
