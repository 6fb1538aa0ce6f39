"""Fixtures shared by the whole suite. Integration tests talk to the real Postgres,
Redis and NATS that ``make test`` found or started (see config/stack.py)."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from portal import services
from portal.models import User

BASE_DIR = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.browser_fixtures", "tests.stack_fixtures"]


@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    """Each test starts with empty rate-limit counters and caches."""
    from core.redis import redis_client
    from portal import keycache

    client = redis_client()
    # Everything but the Celery broker's queue bindings: a running worker and bridge
    # (the stack fixture) declared them once, and a message published without them is lost.
    stale = [k for k in client.scan_iter(count=1000) if not k.startswith(b"_kombu.binding.")]
    if stale:
        client.delete(*stale)
    keycache._cache.clear()
    keycache._cache_loaded.clear()


@pytest.fixture
def user(db) -> User:
    """An account with its starting grant."""
    return services.sign_up(email="ada@example.com", password="correct horse battery")


@pytest.fixture
def other_user(db) -> User:
    """A second account, for checks that one user cannot touch another's things."""
    return services.sign_up(email="grace@example.com", password="correct horse battery")


@pytest.fixture
def api_key(user) -> str:
    """A full key of ``user``: read, write and keys."""
    return services.create_api_key(user=user, name="test", scopes=["read", "write", "keys"])[1]


@pytest.fixture
def api(api_key) -> APIClient:
    """A DRF client that authenticates as ``user`` with a bearer key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


@pytest.fixture
def anon() -> APIClient:
    """A DRF client without credentials."""
    return APIClient()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process that must use the test database (plus
    ``extra`` variables, e.g. coordinator settings of one test module)."""
    env = dict(os.environ)
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        user = db["USER"] or ""
        env["DATABASE_URL"] = f"postgres://{user}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env["DEBUG"] = "false"
    env["PYTHONPATH"] = str(BASE_DIR)
    # Tests create Islands right before they submit jobs: the server's placement index
    # must see them on its next decision, not a refresh period later.
    env["PLACEMENT_REFRESH_SECONDS"] = "0"
    env["PLACEMENT_REFRESH_IN_BACKGROUND"] = "false"
    # ... and no longer see the Islands of earlier tests (flushed from the database), which
    # would make Cargos look servable and waiting jobs busy rather than unplaceable.
    env["PLACEMENT_FULL_RELOAD_SECONDS"] = "0"
    env.update(extra or {})
    return env


class Server:
    def __init__(self, url: str, proc: subprocess.Popen):
        self.url = url
        self.proc = proc

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=10)


def start_server(workers: int = 1, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", "config.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=server_env(env), cwd=BASE_DIR)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return Server(url, proc)
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("test server did not start")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def _server_session(django_db_setup, django_db_blocker) -> Iterator[Server]:
    server = start_server()
    yield server
    stop_server(server)


@pytest.fixture
def live(_server_session, transactional_db) -> Server:
    """The production ASGI app in a uvicorn process on the test database."""
    return _server_session


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's session-wide event loop would otherwise be
    running in the main thread while later asyncio tests try to start their own."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session", autouse=True)
def _no_session_left_on_the_test_database(django_db_setup, django_db_blocker) -> Iterator[None]:
    """The threads that run ORM code for event loops (core.tx.in_thread) keep their
    database connections between calls, as in production: end them before pytest-django
    drops the test database, which it cannot do while they are open."""
    yield
    from django.db import connection

    # pytest-django makes the test database only when a selected test uses it.
    if connection.vendor != "postgresql" or not connection.settings_dict["NAME"].startswith(
        "test_"
    ):
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
