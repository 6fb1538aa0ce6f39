"""One door for every way into the API (portal.api.auth.identify, rendered by
portal.api.errors.refusal): the fast lane, a DRF view and an async Django view refuse
the same request with the same status, error and headers; /chat/completions adds
OpenAI's error type on both of its ways."""

from typing import Any

import pytest
from django.test import Client

from core.redis import redis_client
from portal import services

JOB = {"workload": "nope", "input": {}}
CHAT = {"model": "nope", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def keys(live, settings) -> dict[str, str | None]:
    """The Authorization header of each case."""
    user = services.sign_up(email="ada@example.com", password="correct horse battery")
    read_only = services.create_api_key(user=user, name="ro", scopes=["read"])[1]
    over, made = services.create_api_key(user=user, name="over")
    redis_client().set(f"rl:key:{over.pk}", 10 * settings.API_RATE_LIMIT, ex=60)
    return {
        "no credentials": None,
        "a malformed header": "Bearer ak_" + "x" * 250,
        "an unknown key": "Bearer ak_" + "0" * 40,
        "a read-only key's write": f"Bearer {read_only}",
        "a key over its limit": f"Bearer {made}",
    }


def through_the_lane(live, path: str, body: dict, authorization: str | None) -> Any:
    headers = {"Authorization": authorization} if authorization else {}
    with live.client() as client:
        response = client.post(path, json=body, headers=headers)
    return response.status_code, response.json(), response.headers


def through_django(path: str, body: dict, authorization: str | None) -> Any:
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = Client().post(f"/api/v1{path}", body, content_type="application/json", **extra)
    return response.status_code, response.json(), response.headers


def seen(answer: Any) -> tuple:
    status, body, headers = answer
    error = {k: v for k, v in body["error"].items() if k != "type"}
    return status, error, headers.get("WWW-Authenticate"), "Retry-After" in headers


@pytest.mark.parametrize(
    "case",
    ["no credentials", "a malformed header", "an unknown key", "a read-only key's write",
     "a key over its limit"],
)  # fmt: skip
def test_every_door_refuses_alike(live, keys, case):
    authorization = keys[case]
    answers = {
        "lane /jobs": through_the_lane(live, "/jobs", JOB, authorization),
        "DRF /jobs": through_django("/jobs", JOB, authorization),
        "lane /chat/completions": through_the_lane(live, "/chat/completions", CHAT, authorization),
        "Django /chat/completions": through_django("/chat/completions", CHAT, authorization),
    }
    first = seen(answers["DRF /jobs"])
    assert first[0] in (401, 403, 429)
    for door, answer in answers.items():
        assert seen(answer) == first, door
    chat_types = {answers[door][1]["error"].get("type") for door in answers if "chat" in door}
    assert len(chat_types) == 1
    assert None not in chat_types
