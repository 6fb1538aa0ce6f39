"""POST /api/v1/chat/completions with the official ``openai`` package against the whole
coordinator (web, Celery worker, NATS bridge) and an Island played by the test."""

import time
from collections.abc import Iterator

import openai
import pytest

from compute.models import Job
from compute.seed import seed_cargos
from compute.streaming import slots
from core.redis import redis_client
from portal import services
from portal.models import User
from tests.compute.fake_island import FakeIsland
from tests.factories import IslandFactory

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hello island"},
]


@pytest.fixture
def key(stack) -> str:
    """An API key of a new account, and the seed Cargos."""
    seed_cargos()
    user = services.sign_up(email="ada@example.com", password="correct horse battery")
    return services.create_api_key(user=user, name="openai")[1]


@pytest.fixture
def client(stack, key) -> openai.OpenAI:
    """The official client on the live server; retries off so errors show at once."""
    return openai.OpenAI(base_url=f"{stack.url}/api/v1", api_key=key, max_retries=0, timeout=20)


def island(**behaviour) -> Iterator[FakeIsland]:
    host = IslandFactory(max_concurrent_jobs=10)
    fake = FakeIsland(str(host.pk), **behaviour).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(stack) -> Iterator[FakeIsland]:
    """An online Island that echoes the prompt."""
    yield from island()


def test_a_completion_comes_back_in_openais_format(client, fake):
    answer = client.chat.completions.create(
        model="llm-chat", messages=MESSAGES, max_tokens=50, temperature=0.5,
        top_p=0.9, user="someone", n=1, seed=7,  # accepted and ignored
    )  # fmt: skip
    assert answer.object == "chat.completion"
    assert answer.model == "llm-chat"
    [choice] = answer.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "You said: Hello island"
    assert choice.finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (2, 4)
    assert answer.usage.total_tokens == 6
    job = Job.objects.get(pk=answer.id)
    assert job.status == "completed"
    assert answer.created == int(job.created_at.timestamp())
    assert fake.assignments[0]["input"] == {
        "messages": MESSAGES, "prompt": "Hello island", "max_tokens": 50, "temperature": 0.5,
    }  # fmt: skip
    assert answer.model_extra["island"]["id"] == fake.host_id


def test_a_completion_streams_as_chunks_and_ends_with_done(client, fake):
    stream = client.chat.completions.create(
        model="llm-chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: Hello island"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop"
    assert set(finish[:-1]) == {None}
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_a_stream_without_include_usage_has_no_usage_chunk(client, fake):
    chunks = list(client.chat.completions.create(model="llm-chat", messages=MESSAGES, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "usage" not in chunks[-1].model_fields_set


def test_the_finish_reason_is_length_when_max_tokens_cut_the_answer(client, fake):
    answer = client.chat.completions.create(model="llm-chat", messages=MESSAGES, max_tokens=2)
    assert answer.choices[0].message.content == "You said:"
    assert answer.choices[0].finish_reason == "length"


def test_a_bad_key_raises_authentication_error(stack, key):
    bad = openai.OpenAI(base_url=f"{stack.url}/api/v1", api_key="ak_" + "x" * 40, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        bad.chat.completions.create(model="llm-chat", messages=MESSAGES)
    assert raised.value.status_code == 401
    assert raised.value.code == "unauthorized"
    assert "Invalid or revoked API key" in raised.value.message


def test_an_unknown_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-cargo", messages=MESSAGES)
    assert raised.value.code == "workload_not_found"
    assert raised.value.type == "invalid_request_error"


def test_fields_of_the_wrong_type_are_refused(client):
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.chat.completions.create(model="llm-chat", messages=MESSAGES, temperature="hot")
    assert raised.value.code == "validation_error"
    assert raised.value.body["details"]["temperature"]
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="llm-chat", messages=[])
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="llm-chat", messages=MESSAGES, stream="yes")
    assert Job.objects.count() == 0


def test_an_invalid_message_is_refused_with_its_position(client):
    # A list's errors are keyed by position: the answer's JSON needs string keys.
    messages = [*MESSAGES, {"role": 3.4, "content": "hi"}]
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.chat.completions.create(model="llm-chat", messages=messages)
    assert raised.value.code == "validation_error"
    assert list(raised.value.body["details"]["messages"]) == [str(len(MESSAGES))]
    assert Job.objects.count() == 0


def test_a_sixth_open_stream_raises_rate_limit_error(stack, client):
    gen = island(hold=True)
    held_island = next(gen)
    streams = [
        client.chat.completions.create(model="llm-chat", messages=MESSAGES, stream=True)
        for _ in range(5)
    ]
    try:
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="llm-chat", messages=MESSAGES, stream=True)
        assert raised.value.code == "concurrent_stream_limit"
        assert raised.value.type == "rate_limit_error"
        assert raised.value.response.headers["retry-after"] == "1"
        assert Job.objects.count() == 5  # the refused request made no job
    finally:
        held_island.release()
        texts = ["".join(c.choices[0].delta.content or "" for c in s if c.choices) for s in streams]
        next(gen, None)
    assert texts == ["You said: Hello island"] * 5


def open_streams(user_id) -> int:
    return redis_client().zcard(slots.key(user_id))


def test_a_refused_stream_request_leaves_no_stream_slot_taken(stack, client, key, settings):
    """A streaming request takes its slot with the rate limit: refused afterwards (its
    body, or no Island's answer needed: an unknown model), the slot is given back."""
    user = User.objects.get(email="ada@example.com")
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="llm-chat", messages=[], stream=True)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-cargo", messages=MESSAGES, stream=True)
    assert open_streams(user.pk) == 0


def test_at_the_stream_limit_a_bad_body_still_gets_its_own_error(stack, client):
    """The order of the checks is the usual path's: the body's errors before the quota of
    open streams, although the slot is asked for before the body is read."""
    user = User.objects.get(email="ada@example.com")
    for n in range(5):
        redis_client().zadd(slots.key(user.pk), {f"held-{n}": time.time() + 60})
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="llm-chat", messages=[], stream=True)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="llm-chat", messages=MESSAGES, stream=True)
    assert raised.value.code == "concurrent_stream_limit"
    assert open_streams(user.pk) == 5


def test_a_failed_job_raises_a_server_error_that_is_not_retried(stack, client):
    for _ in island(fail_with="Out of memory"):
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model="llm-chat", messages=MESSAGES)
        assert raised.value.status_code == 502
        assert raised.value.code == "job_failed"
        assert raised.value.body["message"] == "Out of memory"
        assert raised.value.response.headers["x-should-retry"] == "false"


def test_a_failed_streaming_job_raises_while_iterating(stack, client):
    for _ in island(fail_with="Out of memory"):
        stream = client.chat.completions.create(model="llm-chat", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError, match="Out of memory"):
            list(stream)
