"""The launcher behind `make run` / `make test` (config/stack.py, config/run.py), the demo
account, and the process definitions shared with docker-compose."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis
import yaml
from django.conf import settings
from django.core.management import call_command

from config import run, stack
from portal import services
from portal.models import ApiKey, User

BASE_DIR = Path(__file__).resolve().parent.parent


def nats_info(url: str) -> dict:
    """The INFO line a NATS server sends to every new connection."""
    host, port = url.removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        line = sock.makefile("rb").readline().decode()
    assert line.startswith("INFO ")
    return json.loads(line[5:])


@pytest.fixture
def embedded(monkeypatch, tmp_path):
    """resolve_services() with every URL unset or pointing at a closed port."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")
    env = stack.resolve_services(tmp_path, try_local=False)
    yield env
    stack.stop_embedded()


def test_it_starts_embedded_redis_and_nats_when_the_urls_are_unreachable(embedded, tmp_path):
    assert redis.Redis.from_url(embedded["REDIS_URL"]).ping()
    assert embedded["REDIS_URL"] != "redis://127.0.0.1:1/0"
    info = nats_info(embedded["NATS_URL"])
    assert info["jetstream"] is True
    assert (tmp_path / "nats").is_dir()


def test_it_falls_back_to_sqlite_in_the_state_dir_without_a_database_url(embedded, tmp_path):
    assert embedded["DATABASE_URL"] == f"sqlite:///{tmp_path / 'db.sqlite3'}"


def test_it_stops_the_embedded_servers_it_started(embedded):
    procs = list(stack.EMBEDDED)
    assert len(procs) == 2
    stack.stop_embedded()
    assert all(proc.poll() is not None for proc in procs)


def test_it_uses_reachable_urls_as_they_are(monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", settings.REDIS_URL)
    monkeypatch.setenv("NATS_URL", settings.NATS_URL)
    env = stack.resolve_services(tmp_path, try_local=False)
    assert env["REDIS_URL"] == settings.REDIS_URL
    assert env["NATS_URL"] == settings.NATS_URL
    assert stack.EMBEDDED == []


def test_it_keeps_one_secret_key_per_state_dir(tmp_path):
    first = stack.secret_key(tmp_path)
    assert stack.secret_key(tmp_path) == first
    assert len(first) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


@pytest.fixture
def demo_state(settings, tmp_path) -> Path:
    """A state folder of its own for the demo key file and collected static files."""
    settings.STATE_DIR = tmp_path
    settings.STATIC_ROOT = tmp_path / "staticfiles"
    return tmp_path


def parse_demo_lines(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, value in pairs}


def demo_lines(**options) -> dict[str, str]:
    out = io.StringIO()
    call_command("demo_account", stdout=out, **options)
    return parse_demo_lines(out.getvalue())


def key_works(anon, raw: str) -> bool:
    return anon.get("/api/v1/account", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200


@pytest.mark.django_db
def test_demo_account_prints_a_working_password_and_key(anon, demo_state):
    lines = demo_lines()
    user = User.objects.get(email=lines["email"])
    assert lines["email"] == "demo@example.com"
    assert user.check_password(lines["password"])
    response = anon.get("/api/v1/account", HTTP_AUTHORIZATION=f"Bearer {lines['API key']}")
    assert response.json()["data"]["id"] == str(user.pk)


@pytest.mark.django_db
def test_demo_account_is_idempotent_and_keeps_its_key_in_a_private_file(anon, demo_state):
    first, second = demo_lines(), demo_lines()
    assert User.objects.filter(email="demo@example.com").count() == 1
    assert first["password"] == second["password"]
    assert first["API key"] == second["API key"]
    assert key_works(anon, second["API key"])
    assert ApiKey.objects.filter(name="demo (make run)", revoked_at__isnull=True).count() == 1
    # The database holds the key's hash only; the full key is in a file only its owner reads.
    assert not ApiKey.objects.filter(key_hash=first["API key"]).exists()
    kept = demo_state / "demo_api_key"
    assert kept.read_text().strip() == first["API key"]
    assert kept.stat().st_mode & 0o777 == 0o600


@pytest.mark.django_db
def test_demo_account_replaces_a_key_revoked_on_the_settings_page(anon, demo_state):
    first = demo_lines()
    services.revoke_api_key(key=ApiKey.objects.get(name="demo (make run)"))
    second = demo_lines()
    assert second["API key"] != first["API key"]
    assert key_works(anon, second["API key"])


def test_the_demo_key_survives_a_second_prepare_and_the_flag_replaces_it(
    transactional_db, anon, demo_state
):
    """GIVEN make run prepared once WHEN it prepares again (a restart) THEN the demo key is
    the same and still works; WHEN it prepares with --new-demo-key THEN the old key is
    refused and the new one works."""
    first = parse_demo_lines(run.prepare())
    second = parse_demo_lines(run.prepare())
    assert second["API key"] == first["API key"]
    assert key_works(anon, second["API key"])

    third = parse_demo_lines(run.prepare(new_demo_key=True))
    assert third["API key"] != first["API key"]
    assert key_works(anon, third["API key"])
    assert not key_works(anon, first["API key"])
    assert (demo_state / "demo_api_key").read_text().strip() == third["API key"]


@pytest.mark.django_db
def test_the_demo_account_opens_the_admin(client, demo_state):
    lines = demo_lines()
    assert lines["admin"].endswith("/admin/")
    assert client.login(email=lines["email"], password=lines["password"])
    response = client.get("/admin/")
    assert response.status_code == 200
    assert b"Site administration" in response.content


def test_every_compose_app_service_runs_a_procfile_process():
    procfile = run.read_procfile()
    assert {"web", "worker", "beat", "bridge"} <= set(procfile)
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    for name in ("web", "worker", "beat", "bridge"):
        assert compose["services"][name]["command"] == ["honcho", "start", name]


def test_compose_runs_nats_with_the_sails_configuration_which_the_server_accepts(tmp_path):
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    assert compose["services"]["nats"]["command"] == ["-c", "/etc/sail/nats.conf"]
    render = compose["services"]["sail-config"]["command"]
    assert render[:3] == ["python", "-m", "sail.server_config"]
    config = tmp_path / "nats.conf"
    env = {**os.environ, "SAIL_SECRET": "s" * 40, "SAIL_FIELD_PASSWORD": "field"}
    made = subprocess.run(
        [sys.executable, *render[1:4], str(config), "--store-dir", str(tmp_path / "js")],
        env=env, cwd=BASE_DIR, capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    checked = subprocess.run(
        [str(stack.VENV_BIN / "nats-server"), "-c", str(config), "-t"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "field" not in config.read_text().split('"password"')[1][:80]  # hashed


def test_the_demo_island_config_is_read_by_the_agent(tmp_path):
    from island_cli.agent.config import load

    env = {"NATS_URL": "nats://127.0.0.1:4999"}
    config = load(run.island_config(tmp_path, env, "http://127.0.0.1:8123"))
    assert (config.name, config.region, config.runtime) == ("demo-island", "local", "mock")
    assert config.nats_url == "nats://127.0.0.1:4999"
    assert config.api_url == "http://127.0.0.1:8123"
    assert config.state_dir == tmp_path / "demo-island"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_run_serves_the_landing_page_on_embedded_services_and_stops_on_ctrl_c(tmp_path):
    """GIVEN no service URLs WHEN the run command starts THEN the printed URL serves the
    landing page (and the site's 404 page: DEBUG is off) and the demo key works, the
    processes' INFO lines go to their log files
    and not to the console; Ctrl-C stops every process and the embedded servers."""
    port = free_port()
    unset = ("DATABASE_URL", "SECRET_KEY", "DEBUG")  # make run's own defaults
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        STATE_DIR=str(tmp_path),
        PORT=str(port),
        REDIS_URL="redis://127.0.0.1:1/0",
        NATS_URL="nats://127.0.0.1:1",
        WEB_CONCURRENCY="1",
        CELERY_CONCURRENCY="1",
    )
    cmd = [sys.executable, "-m", "config.stack", "run", "--no-island"]
    proc = subprocess.Popen(
        cmd, env=env, cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    opened = threading.Event()

    def drain() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "  Open http://" in line:
                opened.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert opened.wait(90), "".join(lines[-40:])
        output = "".join(lines)
        assert f"Open http://127.0.0.1:{port}/" in output
        assert "embedded SQLite" in output
        assert "embedded redis-server" in output
        assert "embedded nats-server" in output
        key = next(line.split()[-1] for line in lines if "API key:  ak_" in line)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/", timeout=10).status_code == 200
        # DEBUG is off: a newcomer's typo gets the site's 404 page, not every URL pattern.
        missing = httpx.get(f"{base}/no-such-page", timeout=10)
        assert missing.status_code == 404
        assert "Page not found" in missing.text
        assert "URLconf" not in missing.text
        account = httpx.get(
            f"{base}/api/v1/account", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert account.json()["data"]["email"] == "demo@example.com"
        redis_url = next(line.split()[-1] for line in lines if "embedded redis-server at" in line)
        # The other processes start once the web one answers; beat prints its banner.
        beat_log = tmp_path / "logs" / "beat.log"
        deadline = time.monotonic() + 60
        while "celery beat v" not in (beat_log.read_text() if beat_log.exists() else ""):
            assert time.monotonic() < deadline, "beat did not start"
            time.sleep(0.2)
        # The worker yields the CPU to the web process (Procfile, WORKER_NICE).
        niceness = {
            " ".join(p.cmdline()): p.nice()
            for p in psutil.Process(proc.pid).children(recursive=True)
            if p.name() not in ("sh", "bash", "dash")  # the shells honcho runs them in
        }
        assert {n for cmd, n in niceness.items() if "celery -A config worker" in cmd} == {10}
        assert {n for cmd, n in niceness.items() if "granian" in cmd} == {0}
        assert f"tail -f {tmp_path}/logs/*.log" in output
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0
    console = "".join(lines)
    assert " INFO" not in console
    assert "celery beat v" not in console
    assert "celery beat v" in (tmp_path / "logs" / "beat.log").read_text()  # its banner
    assert not stack.reachable(f"tcp://127.0.0.1:{port}", port, timeout=0.5)
    assert not stack.reachable(redis_url, 6379, timeout=0.5)
