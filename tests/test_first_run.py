"""A newcomer's first run, as the README tells it: ``make run``'s own start-up path on a
fresh state folder with no service URLs (embedded SQLite, redis-server and nats-server),
then sign in with the printed demo account, pair the demo Island with the code it printed,
chat through the API with the printed key, and ``island chat`` with the CLI."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser_fixtures import login
from tests.conftest import BASE_DIR, free_port

pytestmark = pytest.mark.browser
ANSWER_WITHIN = 30.0  # seconds after the banner, on the first run


class FirstRun:
    """``python -m config.stack run`` (what ``make run`` runs) and what it printed."""

    def __init__(self, state: Path, port: int):
        self.url = f"http://127.0.0.1:{port}"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "NATS_URL", "SECRET_KEY", "DEBUG")
        }
        env.update(STATE_DIR=str(state), PORT=str(port))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "config.stack", "run"],
            env=env,
            cwd=BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines:
                    if match := regex.search(line):
                        return match
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"no {pattern!r} in:\n" + "\n".join(self.lines[-60:]))
                self.changed.wait(0.5)

    def stop(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise


def pair_in_browser(page: Page, run: FirstRun, email: str, password: str, code: str) -> None:
    login(page, run, email, password)
    page.goto(f"{run.url}/pair")
    page.get_by_label("Pairing code").fill(code)
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("[data-confirm]")).to_contain_text("demo-island")
    page.get_by_role("button", name="Pair this Island").click()
    expect(page.locator("[data-paired]")).to_contain_text("demo-island")


def test_the_readme_first_flow_works_on_the_first_run(tmp_path, page):
    run = FirstRun(tmp_path / "state", free_port())
    try:
        run.wait_for(r"Open http://127\.0\.0\.1:\d+/")
        banner_at = time.monotonic()
        email = run.wait_for(r"email:\s+(\S+@\S+)").group(1)
        password = run.wait_for(r"password:\s+(\S+)").group(1)
        key = run.wait_for(r"API key:\s+(ak_\w+)").group(1)
        code = run.wait_for(r"Pairing code: ([A-Z2-9]{6})").group(1)

        pair_in_browser(page, run, email, password, code)

        body = {"model": "llm-chat", "messages": [{"role": "user", "content": "hello"}]}
        left = ANSWER_WITHIN - (time.monotonic() - banner_at)
        answer = httpx.post(
            f"{run.url}/api/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=max(left, 1.0),
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]
        assert time.monotonic() - banner_at < ANSWER_WITHIN

        island = [str(Path(sys.executable).parent / "island"), "--api-url", run.url]
        cli_env = {**os.environ, "HOME": str(tmp_path / "home")}
        login_cli = subprocess.run(
            [*island, "auth", "login", "--key", key], env=cli_env, capture_output=True, text=True
        )
        assert login_cli.returncode == 0, login_cli.stderr
        chat = subprocess.run(
            [*island, "chat", "hello"], env=cli_env, capture_output=True, text=True, timeout=60
        )
        assert chat.returncode == 0, chat.stderr
        assert chat.stdout.strip()
    finally:
        code = run.stop()
    assert code == 0
