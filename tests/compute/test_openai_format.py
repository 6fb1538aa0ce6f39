"""POST /api/v1/chat/completions with the official ``openai`` package against the live web
server alone: the test plays everything behind the job service, publishing the job's
events on ``jobs.{id}.events`` as the coordinator does once an Island answers. (The
whole path, bridge and Island included, is in test_openai.py.)"""

import threading
import time
from collections.abc import Callable

import openai
import pytest

from billing.models import Balance
from compute.models import Cargo, Job
from compute.seed import seed_cargos
from compute.services.jobs import client_event
from compute.services.lifecycle import event_token
from compute.services.publish import publish_job_events
from portal import services
from portal.models import User
from tests.compute.jobs_support import give_up_once_streamed
from tests.factories import IslandFactory

pytestmark = pytest.mark.usefixtures("streams")
MESSAGES = [{"role": "user", "content": "Hello island"}]


@pytest.fixture
def client(live) -> openai.OpenAI:
    seed_cargos()
    user = services.sign_up(email="ada@example.com", password="correct horse battery")
    key = services.create_api_key(user=user, name="openai")[1]
    return openai.OpenAI(base_url=f"{live.url}/api/v1", api_key=key, max_retries=0, timeout=10)


def answer(events: Callable[[Job], list]) -> threading.Thread:
    """In the background: wait for the next job, then publish ``events(job)`` for it."""
    before = set(Job.objects.values_list("pk", flat=True))

    def run() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            job = Job.objects.exclude(pk__in=before).first()
            if job:
                publish_job_events(job.pk, events(job))
                return
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def reply(job: Job) -> list:
    usage = {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    return [
        client_event(job.pk, "1:s:started", "status", state="running"),
        *(event_token(job.pk, 1, s, t) for s, t in enumerate(["Hi", " there", "!"], 1)),
        client_event(job.pk, "s:completed", "status", state="completed"),
        client_event(job.pk, "done", "done", usage=usage),
    ]


def failure(job: Job) -> list:
    return [
        client_event(job.pk, "s:failed", "status", state="failed"),
        client_event(job.pk, "error", "error", error="Out of memory"),
    ]


def test_a_completion_has_openais_shape(client):
    answer(reply)
    result = client.chat.completions.create(model="llm-chat", messages=MESSAGES, top_p=1, n=1)
    assert result.object == "chat.completion"
    assert result.choices[0].message.content == "Hi there!"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.total_tokens == 5
    job = Job.objects.get(pk=result.id)
    assert job.input["prompt"] == "Hello island"
    assert job.input["messages"] == MESSAGES


def test_a_stream_has_openais_chunks_then_done(client):
    answer(reply)
    chunks = list(
        client.chat.completions.create(
            model="llm-chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hi there!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens == 5


def test_a_streamed_completion_of_a_waiting_job_says_why_in_chunks_openai_reads(client):
    """GIVEN only an Island without a GPU online WHEN a Cargo that needs 6 GB of VRAM is
    streamed THEN the official client reads chunks of empty content whose extension
    ``status`` says why the job waits, then raises the error that ended the wait."""
    IslandFactory(capabilities={"cpu_cores": 4, "ram_mb": 16384, "gpu_vram_mb": 0})
    giving_up = give_up_once_streamed()
    stream = client.chat.completions.create(model="gguf-mistral-7b", messages=MESSAGES, stream=True)
    chunks = []
    with pytest.raises(openai.APIError) as ended:
        chunks.extend(stream)
    giving_up.join(5)
    statuses = [c.model_extra["status"] for c in chunks if "status" in c.model_extra]
    assert [s["state"] for s in statuses] == ["queued", "timeout"]  # then the wait's end
    assert (statuses[0]["reason"], statuses[0]["message"]) == (
        "no_island",
        "no online Island can run this Cargo",
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ""
    assert ended.value.message == (
        "No Island took the job within 300 s: no online Island can run this Cargo"
    )
    assert Job.objects.get().status == "timeout"


def test_a_completion_that_waited_past_its_limit_is_a_504_that_says_why(client):
    IslandFactory(capabilities={"cpu_cores": 4, "ram_mb": 16384, "gpu_vram_mb": 0})
    giving_up = give_up_once_streamed(streamed=False)
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="gguf-mistral-7b", messages=MESSAGES)
    giving_up.join(5)
    assert raised.value.status_code == 504
    assert raised.value.code == "job_timeout"
    assert raised.value.body["message"] == (
        "No Island took the job within 300 s: no online Island can run this Cargo"
    )


def test_max_tokens_reached_gives_finish_reason_length(client):
    answer(reply)
    result = client.chat.completions.create(model="llm-chat", messages=MESSAGES, max_tokens=3)
    assert result.choices[0].finish_reason == "length"
    assert Job.objects.get().input["max_tokens"] == 3


def test_a_failed_job_is_a_502_with_the_islands_message(client):
    answer(failure)
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="llm-chat", messages=MESSAGES)
    assert raised.value.status_code == 502
    assert raised.value.body["message"] == "Out of memory"


def test_a_failed_streaming_job_raises_while_iterating(client):
    answer(failure)
    stream = client.chat.completions.create(model="llm-chat", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="Out of memory"):
        list(stream)


def test_an_idempotency_key_replays_the_same_completion(client):
    answer(reply)
    headers = {"Idempotency-Key": "k-1"}
    first = client.chat.completions.create(
        model="llm-chat", messages=MESSAGES, extra_headers=headers
    )
    again = client.chat.completions.create(
        model="llm-chat", messages=MESSAGES, extra_headers=headers
    )
    assert again.id == first.id
    assert again.choices[0].message.content == "Hi there!"
    assert Job.objects.count() == 1


def test_the_same_key_with_another_request_is_refused(client):
    answer(reply)
    headers = {"Idempotency-Key": "k-2"}
    client.chat.completions.create(model="llm-chat", messages=MESSAGES, extra_headers=headers)
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.chat.completions.create(
            model="llm-chat", messages=[{"role": "user", "content": "Else"}], extra_headers=headers
        )
    assert raised.value.code == "idempotency_key_reused"


def test_the_concurrent_job_limit_is_a_rate_limit_error(client, settings):
    user = User.objects.get()
    cargo = Cargo.objects.get(slug="llm-chat")
    Job.objects.bulk_create(
        [
            Job(user=user, cargo=cargo, status="running")
            for _ in range(settings.JOB_CONCURRENT_LIMIT)
        ]
    )
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="llm-chat", messages=MESSAGES)
    assert raised.value.code == "concurrent_job_limit"


def test_an_account_without_credits_gets_a_402_that_openai_raises_as_a_status_error(client):
    Balance.objects.update(available=0)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="llm-chat", messages=MESSAGES)
    assert type(raised.value) is openai.APIStatusError  # the package has no 402 class
    assert raised.value.status_code == 402
    assert raised.value.code == "insufficient_credits"
    assert raised.value.type == "insufficient_quota"
