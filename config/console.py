"""What ``make run`` shows on its console, and the log files that keep everything.

honcho hands every line that its processes print to a printer. :class:`ConsolePrinter`
appends each line to ``<logs>/<process>.log`` and echoes to the console only what a person
trying the system needs: warnings and errors, with the lines that continue them (a
traceback, a message on several lines), the demo Island's pairing lines, and processes
that stop. Celery's banners and its INFO line per task (a few every second) stay in the
files. With ``verbose`` every line is echoed too.
"""

import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from honcho.printer import Message, Printer

# A line that starts a log record, and its level: Django's and the Island agent's format
# ("2026-01-02 10:00:00,123 WARNING name: ..."), Celery's ("[2026-01-02 10:00:00,123:
# WARNING/MainProcess] ...") and granian's ("[WARNING] ...").
RECORD = re.compile(
    r"^(?:\d{4}-\d\d-\d\d[ T][\d:,.]+ |\[\d{4}-\d\d-\d\d [\d:,.]+: |\[)"
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\b"
)
LOUD_LEVELS = {"WARNING", "ERROR", "CRITICAL"}
# What Python's warnings module prints: "path/to/module.py:12: SomeWarning: message".
PYTHON_WARNING = re.compile(r"^\S.*:\d+: (?P<category>\w*Warning): ")
# Celery's warning that the worker runs as root: a container's or a VM's usual user,
# not something to act on while trying the system. It stays in the worker's log.
QUIET_WARNINGS = {"SecurityWarning"}
# An exception that nobody logged: shown with the lines that follow it.
TRACEBACK = "Traceback (most recent call last):"
# Lines of their own that are shown (the lines after them are not): the demo Island's
# pairing lines, and its errors.
ONE_LINERS = re.compile(
    r"^(?:Pairing code: |Enter this code at |Paired with |This Island is already paired|"
    r"Pairing failed|Error: |Warning: )"
)
STAMPED = re.compile(r"^\[?\d{4}-\d\d-\d\d[ T]\d")  # a line that starts with its time
SYSTEM = "system"  # honcho's own lines: a process started, stopped, signals
QUIET_SYSTEM = re.compile(r"^\S+ started \(pid=\d+\)$")


def loudness(line: str) -> bool | None:
    """Whether a line goes to the console (True) or only to its file (False); None when it
    continues the line above (a traceback, a banner, a message's next line)."""
    if line.startswith(TRACEBACK):
        return True
    if record := RECORD.match(line):
        return record["level"] in LOUD_LEVELS
    if warning := PYTHON_WARNING.match(line):
        return warning["category"] not in QUIET_WARNINGS
    return None


class ConsolePrinter(Printer):
    def __init__(
        self,
        logs: Path,
        names: Iterable[str] = (),
        *,
        output: TextIO = sys.stdout,
        verbose: bool = False,
    ):
        super().__init__(output)
        self.logs = logs
        self.verbose = verbose
        self.files: dict[str, TextIO] = {}
        self.showing: dict[str, bool] = {}  # per process: the console shows its record
        self.lock = threading.Lock()  # the banner is written from another thread
        for name in (*names, SYSTEM):  # a quiet process's file is this run's too
            self.file(name)

    def write(self, message: Message) -> None:
        data = message.data
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        name = message.name or SYSTEM
        log = self.file(name)
        stamp = message.time.strftime("%Y-%m-%d %H:%M:%S")
        for line in text.splitlines():
            log.write(f"{line}\n" if STAMPED.match(line) else f"{stamp} {line}\n")
            if self.verbose or self.shows(name, line):
                with self.lock:
                    super().write(message._replace(data=f"{line}\n"))

    def shows(self, name: str, line: str) -> bool:
        if name == SYSTEM:
            return not QUIET_SYSTEM.match(line)
        if ONE_LINERS.match(line):
            self.showing[name] = False
            return True
        loud = loudness(line)
        if loud is not None:
            self.showing[name] = loud
        return self.showing.get(name, False)

    def announce(self, text: str) -> None:
        with self.lock:
            print(text, file=self.output, flush=True)

    def file(self, name: str) -> TextIO:
        """The process's log file; the previous run's is kept as ``<name>.log.1``."""
        if name not in self.files:
            self.logs.mkdir(parents=True, exist_ok=True)
            path = self.logs / f"{name}.log"
            if path.exists():
                path.replace(path.with_name(f"{name}.log.1"))
            self.files[name] = path.open("a", buffering=1, encoding="utf-8")
        return self.files[name]

    def close(self) -> None:
        for log in self.files.values():
            log.close()
        self.files.clear()
