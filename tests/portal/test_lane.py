"""The API's fast lane (portal.api.lane) through the live ASGI server: the same answers,
errors and headers as Django's path, and what it leaves to that path."""

import uuid

import pytest
from django.test import Client

from compute.models import Job
from core.redis import redis_client
from portal import services
from tests.compute.jobs_support import island, streams  # noqa: F401
from tests.factories import CargoFactory

SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY"}


@pytest.fixture
def account(live):
    """An account with credits and a read+write key, made in the live server's database."""
    user = services.sign_up(email="ada@example.com", password="correct horse battery")
    return user, services.create_api_key(user=user, name="lane")[1]


@pytest.fixture
def chat(live):
    return CargoFactory(slug="lane-chat", runtime_type="container")


def submit(live, key: str, body=None, **headers):
    body = body if body is not None else {"workload": "lane-chat", "input": {"prompt": "Hi"}}
    with live.client(key) as client:
        return client.post("/jobs", json=body, headers=headers)


@pytest.mark.usefixtures("streams")
def test_a_submission_answers_with_the_job_the_limit_and_the_security_headers(
    live, account, chat, settings
):
    host = island()
    response = submit(live, account[1])
    assert response.status_code == 201
    job = response.json()["data"]
    assert (job["status"], job["island_id"], job["workload_slug"]) == (
        "running", str(host.pk), "lane-chat",
    )  # fmt: skip
    assert Job.objects.get(pk=job["id"]).island_id == host.pk
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-ratelimit-limit"] == str(settings.API_RATE_LIMIT)
    assert int(response.headers["x-ratelimit-remaining"]) == settings.API_RATE_LIMIT - 1
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"workload": "lane-chat", "input": {"prompt": "Hi"}, "priority": 101}, 422,
         "validation_error"),
        ({"workload": "nope", "input": {}}, 404, "workload_not_found"),
    ],
)  # fmt: skip
def test_refused_submissions_come_back_in_the_one_error_shape(live, account, chat, body, status,
                                                              code):  # fmt: skip
    response = submit(live, account[1], body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert not Job.objects.exists()


def test_malformed_json_is_a_400(live, account, chat):
    with live.client(account[1]) as client:
        response = client.post(
            "/jobs", content=b'{"workload": ', headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_an_unknown_key_is_a_401_asking_for_a_bearer(live, chat):
    response = submit(live, "ak_" + "x" * 40)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_revoked_key_is_refused_at_once(live, account, chat):
    user, key = account
    assert submit(live, key, {"workload": "nope", "input": {}}).status_code == 404  # cached
    services.revoke_api_key(key=user.api_keys.get())
    assert submit(live, key).status_code == 401


def test_a_read_only_key_may_not_submit(live, account, chat):
    user, _ = account
    read_only = services.create_api_key(user=user, name="ro", scopes=["read"])[1]
    response = submit(live, read_only)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_a_key_over_its_limit_gets_429_with_its_headers_and_no_job(live, account, chat, settings):
    user, key = account
    key_id = user.api_keys.get().pk
    redis_client().set(f"rl:key:{key_id}", settings.API_RATE_LIMIT, ex=60)
    response = submit(live, key)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert int(response.headers["retry-after"]) >= 1
    assert not Job.objects.exists()


def test_an_idempotent_retry_gets_the_first_answer_again(live, account, chat):
    key = str(uuid.uuid4())
    first = submit(live, account[1], **{"Idempotency-Key": key})
    again = submit(live, account[1], **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert Job.objects.count() == 1


def test_a_client_that_wants_no_json_gets_djangos_406(live, account, chat):
    with live.client(account[1]) as client:
        response = client.post("/jobs", json={}, headers={"Accept": "text/html"})
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "not_acceptable"


def test_a_browser_session_takes_djangos_path_and_its_csrf_check(live, account, chat):
    """Without a key the lane leaves the request alone: a session POST without a CSRF
    token is refused by the API's session authentication, as before."""
    browser = Client()
    browser.force_login(account[0])
    with live.client() as client:
        client.cookies.set("sessionid", browser.cookies["sessionid"].value)
        response = client.post("/jobs", json={"workload": "lane-chat", "input": {}})
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert not Job.objects.exists()


def test_a_chat_error_from_the_lane_carries_openais_type(live, chat):
    with live.client("ak_" + "x" * 40) as client:
        response = client.post(
            "/chat/completions", json={"model": "lane-chat", "messages": [{"role": "user"}]}
        )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
