"""make run's console (config/console.py): every line to its process's log file, only what
a person needs to the console."""

import io
from datetime import datetime
from pathlib import Path

import pytest
from honcho.printer import Message

from config.console import ConsolePrinter

WORKER_START = [
    "/app/.venv/lib/python3.11/site-packages/celery/platforms.py:893: SecurityWarning: "
    "You're running the worker with superuser privileges: this is",
    "absolutely not recommended!",
    "",
    "  _warn_or_raise_security_error(egid, euid, gid, uid,",
    " -------------- celery@vm v5.7.0 (collider)",
    "[tasks]",
    "  . compute.dispatch_queued",
    "[2026-12-06 04:53:38,994: INFO/MainProcess] Connected to redis://127.0.0.1:44159/0",
    "[2026-12-06 04:53:40,600: INFO/MainProcess] Task compute.dispatch_queued[a9] received",
]
WEB_ERROR = [
    "[ERROR] Application callable raised an exception",
    "Traceback (most recent call last):",
    '  File "/app/channels/utils.py", line 57, in await_many_dispatch',
    "    await task",
    "TimeoutError: Timeout reading from 127.0.0.1:44159",
]


class Console:
    """A printer writing into a string and a log folder, fed like honcho feeds it."""

    def __init__(self, logs: Path, *, verbose: bool = False):
        self.output = io.StringIO()
        self.logs = logs
        self.printer = ConsolePrinter(logs, output=self.output, verbose=verbose)
        self.printer.width = 6

    def feed(self, name: str, lines: list[str]) -> None:
        for line in lines:
            data = f"{line}\n".encode()
            self.printer.write(Message("line", data, datetime(2026, 12, 6, 4, 53), name, None))

    def shown(self) -> list[str]:
        return [line.split("| ", 1)[1] for line in self.output.getvalue().splitlines()]

    def log(self, name: str) -> str:
        self.printer.close()
        return (self.logs / f"{name}.log").read_text()


@pytest.fixture
def console(tmp_path) -> Console:
    """A console printer with its log folder in tmp_path."""
    return Console(tmp_path / "logs")


def test_info_lines_banners_and_the_root_warning_go_only_to_the_log_file(console):
    console.feed("worker", WORKER_START)
    console.feed("web", ["2026-12-06 04:53:37,918 INFO sail.streams: created stream ISLANDS"])
    assert console.shown() == []
    worker_log = console.log("worker")
    for line in WORKER_START:
        assert line in worker_log
    assert "created stream ISLANDS" in console.log("web")


def test_warnings_and_errors_reach_the_console_with_their_traceback(console):
    console.feed("web", WEB_ERROR)
    console.feed("web", ["[2026-12-06 04:53:40,600: INFO/MainProcess] Task received"])
    console.feed("bridge", ["2026-12-06 04:53:37,918 WARNING sail.bridge: batch refused"])
    console.feed(
        "worker",
        [f"[2026-12-06 04:55:34,307: {level}/MainProcess] x" for level in ("ERROR", "CRITICAL")],
    )
    assert console.shown() == [
        *WEB_ERROR,
        "2026-12-06 04:53:37,918 WARNING sail.bridge: batch refused",
        "[2026-12-06 04:55:34,307: ERROR/MainProcess] x",
        "[2026-12-06 04:55:34,307: CRITICAL/MainProcess] x",
    ]


def test_an_exception_nobody_logged_and_python_warnings_reach_the_console(console):
    crash = ["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: bad"]
    warning = ["/app/x.py:3: RuntimeWarning: coroutine 'f' was never awaited", "  f()"]
    console.feed("bridge", crash)
    console.feed("web", warning)
    assert console.shown() == crash + warning


def test_an_email_the_worker_prints_reaches_the_console_whole(console):
    """The console email backend prints it; Celery logs what a task prints as warnings."""
    email = [
        '[2026-12-06 05:11:46,248: WARNING/ForkPoolWorker-2] Content-Type: text/plain; charset="utf-8"',
        "Subject: Your Archipelago sign-in link",
        "",
        "http://127.0.0.1:8000/login/magic/JIOx4MRL4g5c21sZSX8JBgn5rVUAJEUDLyE8zZFIu90",
        "[2026-12-06 05:11:46,248: WARNING/ForkPoolWorker-2] " + "-" * 79,
    ]
    console.feed("worker", email)
    console.feed("worker", ["[2026-12-06 05:11:46,250: INFO/ForkPoolWorker-2] Task succeeded"])
    assert console.shown() == email


def test_the_islands_pairing_lines_reach_the_console_but_not_its_other_lines(console):
    console.feed(
        "island",
        [
            "Island 20bd174b (demo-island) · runtime mock",
            "Connected and registered",
            "Pairing code: FPGEVV",
            "Enter this code at http://127.0.0.1:8000/pair",
            "Preload recommendation: llm-chat (container) · demand 0",
            "Paired with account 7f3e — this Island is ready",
        ],
    )
    assert console.shown() == [
        "Pairing code: FPGEVV",
        "Enter this code at http://127.0.0.1:8000/pair",
        "Paired with account 7f3e — this Island is ready",
    ]


def test_a_process_that_stops_is_shown_but_not_one_that_starts(console):
    console.feed("system", ["web started (pid=17898)", "web stopped (rc=1)"])
    assert console.shown() == ["web stopped (rc=1)"]


def test_verbose_shows_every_line(tmp_path):
    console = Console(tmp_path, verbose=True)
    console.feed("worker", WORKER_START)
    assert console.shown() == WORKER_START


def test_each_line_of_the_log_file_has_its_time_once(console):
    console.feed("island", ["Connected and registered"])
    console.feed("island", ["2026-12-06 04:53:37,918 WARNING island: NATS: disconnected"])
    assert console.log("island").splitlines() == [
        "2026-12-06 04:53:00 Connected and registered",
        "2026-12-06 04:53:37,918 WARNING island: NATS: disconnected",
    ]


def test_a_process_that_printed_nothing_has_an_empty_log_of_this_run(tmp_path):
    (tmp_path / "web.log").write_text("a line of the previous run\n")
    printer = ConsolePrinter(tmp_path, ["web", "worker"], output=io.StringIO())
    printer.close()
    assert (tmp_path / "web.log").read_text() == ""
    assert (tmp_path / "web.log.1").read_text() == "a line of the previous run\n"
    assert (tmp_path / "worker.log").exists()


def test_the_previous_runs_log_is_kept_once(tmp_path):
    for run in ("first", "second", "third"):
        console = Console(tmp_path)
        console.feed("web", [f"{run} run"])
        console.printer.close()
    assert "third run" in (tmp_path / "web.log").read_text()
    assert "second run" in (tmp_path / "web.log.1").read_text()
    assert not (tmp_path / "web.log.2").exists()
