"""Outages of one backing service: a Postgres restart (its connections cut, as a restart
does, through a proxy the test controls) and Redis going away (a redis-server of the
test's own). The web process keeps answering in the API's shape: 503 with Retry-After
when it cannot reach the database, never 500, and it keeps serving without Redis."""

import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from django.conf import settings

from tests.conftest import Server, start_server, stop_server
from tests.factories import CargoFactory
from tests.outages import CuttableProxy, RedisServer

SSE = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def proxy() -> Iterator[CuttableProxy]:
    """A cuttable proxy in front of the test database's Postgres."""
    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("needs Postgres")
    found = CuttableProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    yield found
    found.stop()


@pytest.fixture(scope="module")
def behind_proxy(django_db_setup, django_db_blocker, proxy) -> Iterator[Server]:
    """A web process that reaches Postgres only through ``proxy``, with a pool of
    connections as the Procfile's has."""
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER'] or ''}@127.0.0.1:{proxy.port}/{db['NAME']}"
    server = start_server(env={"DATABASE_URL": url, "DB_POOL_SIZE": "4"})
    yield server
    stop_server(server)


@pytest.fixture
def job_id(transactional_db, behind_proxy, api_key) -> str:
    """A job of the account of ``api_key``, submitted through the proxied server."""
    CargoFactory(slug="outage-chat", runtime_type="container", price_per_job=Decimal("0.01"))
    with client(behind_proxy, api_key) as http:
        answer = http.post("/jobs", json={"workload": "outage-chat", "input": {"prompt": "Hi"}})
        assert answer.status_code == 201, answer.text
        return answer.json()["data"]["id"]


def client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def every_door(http: httpx.Client, job: str) -> dict[str, httpx.Response]:
    """One request through each way in: the fast lane (a submission, a stream), a DRF
    view, and the usual path's streaming view (asked for by its ``Accept``)."""
    submission = {"workload": "outage-chat", "input": {"prompt": "Hi"}}
    answers = {
        "fast lane": http.post("/jobs", json=submission),
        "DRF view": http.get("/jobs"),
        "account": http.get("/account"),
    }
    for name, headers in (("fast stream", {}), ("usual stream", SSE)):
        with http.stream("GET", f"/jobs/{job}/stream", headers=headers) as answer:
            if answer.status_code != 200:  # an error: read it (a stream would go on)
                answer.read()
            answers[name] = answer
    return answers


def test_connections_a_postgres_restart_killed_are_replaced_before_they_fail_a_request(
    behind_proxy, proxy, api_key, job_id
):
    """GIVEN a web process whose pooled connections are all open
    WHEN Postgres restarts (every connection cut, the server back at once)
    THEN the first request through each door succeeds: dead connections are not used."""
    with client(behind_proxy, api_key) as http:
        for _ in range(3):  # every pool and thread holds a connection
            assert {a.status_code for a in every_door(http, job_id).values()} <= {200, 201}
        proxy.cut()
        proxy.restore()
        answers = every_door(http, job_id)
    assert {name: a.status_code for name, a in answers.items()} == {
        "fast lane": 201, "DRF view": 200, "account": 200, "fast stream": 200, "usual stream": 200,
    }  # fmt: skip


def test_a_request_that_cannot_reach_postgres_gets_503_with_retry_after(
    behind_proxy, proxy, api_key, job_id
):
    with client(behind_proxy, api_key) as http:
        every_door(http, job_id)
        proxy.cut()
        try:
            answers = every_door(http, job_id)
        finally:
            proxy.restore()
        for name, answer in answers.items():
            assert answer.status_code == 503, (name, answer.status_code)
            assert answer.headers["Retry-After"] == "5", name
            assert answer.json()["error"]["code"] == "unavailable", name
        # Back: the next requests are served. While the database was away (five requests,
        # each waiting the pool's 10 s for a connection) the pool retried with exponential
        # backoff (1, 2, 4, 8, 16 s), so its next attempt may come ~16 s after the server is.
        deadline = time.monotonic() + 40
        while (answer := http.get("/jobs")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer.status_code == 200
        assert http.post("/jobs", json={"workload": "outage-chat", "input": {}}).status_code == 201


# --- Redis ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """A redis-server of this module's own."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def on_own_redis(django_db_setup, django_db_blocker, redis_server) -> Iterator[Server]:
    """A web process whose Redis is ``redis_server``, with a small rate limit."""
    env = {"REDIS_URL": redis_server.url, "API_RATE_LIMIT": "20", "WEB_CONCURRENCY": "2"}
    server = start_server(env=env)
    yield server
    stop_server(server)


def test_without_redis_the_api_serves_with_a_per_process_limit_and_health_says_degraded(
    on_own_redis, redis_server, transactional_db, api_key
):
    """GIVEN a limit of 20 requests a minute and 2 web processes (this one serves alone)
    WHEN Redis goes away
    THEN requests are served, up to 20 / 2 = 10 a minute from this process, then 429;
    /health says degraded; once Redis is back, health is ok and Redis counts again."""
    with client(on_own_redis, api_key) as http:
        assert http.get("/health").json() == {"status": "ok", "version": settings.VERSION}
        assert http.get("/account").headers["X-RateLimit-Limit"] == "20"
        redis_server.stop()
        try:
            answers = [http.get("/account") for _ in range(12)]
            codes = [a.status_code for a in answers]
            assert codes == [200] * 10 + [429] * 2, codes
            assert answers[0].headers["X-RateLimit-Limit"] == "10"
            assert answers[-1].json()["error"]["code"] == "rate_limited"
            health = http.get("/health")
            assert (health.status_code, health.json()["status"]) == (200, "degraded")
            assert health.json()["degraded"] == ["redis"]
        finally:
            redis_server.start()
        time.sleep(1.5)  # the process tries Redis again a second after its last failure
        assert http.get("/health").json()["status"] == "ok"
        answer = http.get("/account")
        assert (answer.status_code, answer.headers["X-RateLimit-Limit"]) == (200, "20")
