"""GET /api/v1/jobs/:id/stream against the live server and a real NATS server: events are
published on ``jobs.{id}.events`` as the job services publish them, and read back as
Server-Sent Events."""

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from compute.models import Cargo
from compute.seed import seed_cargos
from compute.services import dispatch, waiting
from compute.services.jobs import client_event
from compute.services.lifecycle import event_token
from compute.services.publish import publish_job_events
from portal import services
from tests.compute.jobs_support import running_job
from tests.factories import IslandFactory

pytestmark = pytest.mark.usefixtures("streams")


@pytest.fixture
def account(live):
    """An account and its API key, made after ``live`` (in the transactional test DB)."""
    user = services.sign_up(email="ada@example.com", password="correct horse battery")
    return user, services.create_api_key(user=user, name="sse")[1]


@pytest.fixture
def job(account, chat):
    """A running job of ``account`` on an Island."""
    return running_job(chat, IslandFactory(), user=account[0])


def events_of(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """``(event name, data)`` of each SSE event; comments are skipped."""
    name, data = None, []
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])
        elif line == "" and data:
            yield name or "message", json.loads("\n".join(data))
            name, data = None, []


def read_all(live, key: str, job_id) -> list[tuple[str, dict]]:
    with live.client(key) as client, client.stream("GET", f"/jobs/{job_id}/stream") as response:
        assert response.status_code == 200, response.read()
        return list(events_of(response))


def tokens(job, texts: list[str], *, attempt: int = 1, start: int = 1) -> list:
    return [event_token(job.pk, attempt, seq, t) for seq, t in enumerate(texts, start=start)]


def done(job, total: int = 3) -> list:
    usage = {"prompt_tokens": 1, "completion_tokens": total - 1, "total_tokens": total}
    return [
        client_event(job.pk, "s:completed", "status", state="completed"),
        client_event(job.pk, "done", "done", usage=usage),
    ]


def test_events_come_in_order_with_the_seed_names_and_their_type_in_the_data(live, account, job):
    publish_job_events(job.pk, [client_event(job.pk, "1:s:started", "status", state="running")])
    publish_job_events(job.pk, [client_event(job.pk, "1:p:1", "progress", step=1, total=2)])
    publish_job_events(job.pk, tokens(job, ["Hel", "lo"]))
    image = {"data": "aGk=", "format": "png", "width": 1, "height": 1}
    publish_job_events(job.pk, [client_event(job.pk, "1:i:1", "image", **image)])
    publish_job_events(job.pk, done(job))

    events = read_all(live, account[1], job.pk)

    assert [name for name, _ in events] == [
        "status", "progress", "token", "token", "image", "status", "done",
    ]  # fmt: skip
    assert all(data["type"] == name for name, data in events)
    assert [d["content"] for n, d in events if n == "token"] == ["Hel", "lo"]
    assert (events[1][1]["step"], events[1][1]["total"]) == (1, 2)
    assert events[4][1]["data"] == "aGk="
    assert events[4][1]["format"] == "png"
    assert events[-1][1]["usage"]["total_tokens"] == 3


def test_the_response_is_an_event_stream_that_ends_after_done(live, account, job):
    publish_job_events(job.pk, tokens(job, ["a"]) + done(job))
    with live.client(account[1]) as client:
        response = client.get(f"/jobs/{job.pk}/stream")
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.text.endswith('"total_tokens":3}}\n\n')


def test_a_late_client_gets_the_past_then_live_events_without_gap_or_duplicate(live, account, job):
    publish_job_events(job.pk, tokens(job, [f"{i} " for i in range(1, 51)]))
    with (
        live.client(account[1]) as client,
        client.stream("GET", f"/jobs/{job.pk}/stream") as response,
    ):
        seen = events_of(response)
        early = [next(seen) for _ in range(50)]
        # Live now: new tokens, a token published twice under another id, and the end.
        publish_job_events(job.pk, tokens(job, [f"{i} " for i in range(51, 101)], start=51))
        publish_job_events(
            job.pk, [(f"{job.pk}:again:70", {**tokens(job, ["70 "], start=70)[0][1]})]
        )
        publish_job_events(job.pk, done(job))
        late = list(seen)
    texts = [d["content"] for _, d in early + late if d["type"] == "token"]
    assert texts == [f"{i} " for i in range(1, 101)]
    assert [d["seq"] for _, d in early + late if d["type"] == "token"] == list(range(1, 101))
    assert late[-1][0] == "done"


def test_a_finished_job_replays_from_the_stream_and_ends(live, account, job):
    publish_job_events(job.pk, tokens(job, ["Hi", " there"]) + done(job))
    job.status, job.output = "completed", "Hi there"
    job.save(update_fields=["status", "output"])

    events = read_all(live, account[1], job.pk)

    assert [(n, d.get("content")) for n, d in events] == [
        ("token", "Hi"), ("token", " there"), ("status", None), ("done", None),
    ]  # fmt: skip


def test_a_finished_job_without_events_in_the_stream_is_replayed_from_its_row(live, account, job):
    job.status, job.output, job.prompt_tokens, job.completion_tokens = (
        "completed",
        "All of it",
        2,
        3,
    )
    job.save()

    events = read_all(live, account[1], job.pk)

    assert [n for n, _ in events] == ["token", "status", "done"]
    assert events[0][1]["content"] == "All of it"
    assert events[1][1]["state"] == "completed"
    assert events[2][1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


def test_a_failed_job_replays_its_error(live, account, job):
    job.status, job.error = "failed", "Out of memory"
    job.save()
    events = read_all(live, account[1], job.pk)
    assert events[-1] == (
        "error",
        {"type": "error", "job_id": str(job.pk), "error": "Out of memory"},
    )


def test_a_requeued_job_does_not_repeat_text_the_client_already_has(live, account, job):
    publish_job_events(job.pk, tokens(job, ["one", " two"]))
    requeued = client_event(job.pk, "1:s:requeued", "status", state="queued")
    publish_job_events(job.pk, [requeued])
    publish_job_events(job.pk, tokens(job, ["one", " two", " three"], attempt=2) + done(job))

    events = read_all(live, account[1], job.pk)

    assert "".join(d["content"] for _, d in events if d["type"] == "token") == "one two three"


def test_without_a_key_the_stream_answers_401_in_the_error_shape(live, job):
    with live.client() as client:
        response = client.get(f"/jobs/{job.pk}/stream")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_an_unknown_key_is_refused(live, job):
    with live.client("ak_" + "x" * 40) as client:
        response = client.get(f"/jobs/{job.pk}/stream")
    assert response.status_code == 401


def test_another_accounts_job_is_not_found(live, job):
    stranger = services.sign_up(email="grace@example.com", password="correct horse battery")
    key = services.create_api_key(user=stranger, name="k")[1]
    with live.client(key) as client:
        response = client.get(f"/jobs/{job.pk}/stream")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "Job not found", "code": "not_found"}}


def test_stream_requests_count_against_the_rate_limit(live, account, job, settings):
    publish_job_events(job.pk, tokens(job, ["a"]) + done(job))
    with live.client(account[1]) as client:
        response = client.get(f"/jobs/{job.pk}/stream")
    assert response.headers["x-ratelimit-limit"] == str(settings.API_RATE_LIMIT)
    assert int(response.headers["x-ratelimit-remaining"]) == settings.API_RATE_LIMIT - 1


def test_other_methods_are_not_allowed(live, account, job):
    with live.client(account[1]) as client:
        response = client.post(f"/jobs/{job.pk}/stream", json={})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_sixth_concurrent_stream_is_refused_until_one_closes(live, account, chat):
    user, key = account
    island = IslandFactory(max_concurrent_jobs=10)
    jobs = [running_job(chat, island, user=user) for _ in range(6)]
    clients = [live.client(key) for _ in range(6)]
    opened = []
    try:
        for client, job in zip(clients[:5], jobs, strict=False):
            request = client.build_request("GET", f"/jobs/{job.pk}/stream")
            response = client.send(request, stream=True)
            assert response.status_code == 200
            opened.append(response)

        refused = clients[5].get(f"/jobs/{jobs[5].pk}/stream")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "concurrent_stream_limit"
        assert refused.headers["retry-after"] == "1"

        opened.pop().close()  # the client goes away: its slot is released
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            request = clients[5].build_request("GET", f"/jobs/{jobs[5].pk}/stream")
            again = clients[5].send(request, stream=True)
            if again.status_code == 200:
                opened.append(again)
                break
            again.close()
            time.sleep(0.1)
        assert opened[-1].status_code == 200
        assert len(opened) == 5
    finally:
        for response in opened:
            response.close()
        for client in clients:
            client.close()


def test_a_waiting_job_s_stream_says_why_it_waits_as_that_changes_then_how_the_wait_ended(
    live, account, settings
):
    """GIVEN only an Island without a GPU online WHEN a job of a Cargo that needs 6 GB of
    VRAM is streamed THEN its first event says no online Island can run it; WHEN an
    Island that can run it comes, but busy THEN an event says the fitting Islands are all
    busy; WHEN its limit passes THEN it ends with status timeout and an error."""
    settings.PLACEMENT_REFRESH_SECONDS = 0
    seed_cargos()
    IslandFactory(capabilities={"cpu_cores": 4, "ram_mb": 16384, "gpu_vram_mb": 0})
    body = {"workload": "gguf-mistral-7b", "input": {"prompt": "Hi"}}
    with live.client(account[1]) as client:
        job_id = client.post("/jobs", json=body).json()["data"]["id"]
        with client.stream("GET", f"/jobs/{job_id}/stream") as response:
            seen = events_of(response)
            first = next(seen)
            gpu = IslandFactory(max_concurrent_jobs=1)
            running_job(Cargo.objects.get(slug="gguf-mistral-7b"), gpu)
            dispatch.dispatch_queued()
            second = next(seen)
            waiting.expire_waiting(now=timezone.now() + timedelta(seconds=301))
            rest = list(seen)
    assert first[0] == "status"
    assert {k: first[1][k] for k in ("state", "reason", "message", "timeout_seconds")} == {
        "state": "queued",
        "reason": "no_island",
        "message": "no online Island can run this Cargo",
        "timeout_seconds": 300,
    }
    assert first[1]["expires_at"].endswith("Z")
    assert (second[0], second[1]["state"], second[1]["reason"]) == ("status", "queued", "busy")
    assert second[1]["message"] == "all the Islands that can run this Cargo are busy"
    assert [(name, data.get("state")) for name, data in rest] == [
        ("status", "timeout"),
        ("error", None),
    ]
    assert rest[-1][1]["error"] == (
        "No Island took the job within 300 s: all the Islands that can run this Cargo are busy"
    )
