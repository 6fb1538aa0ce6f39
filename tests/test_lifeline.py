"""The web process's workers die with their master (config.lifeline)."""

import contextlib
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import BASE_DIR, free_port, server_env

PROCFILE = BASE_DIR / "Procfile"


def web_command(port: int) -> list[str]:
    """The Procfile's web command (granian, two workers) on ``port``."""
    line = next(x for x in PROCFILE.read_text().splitlines() if x.startswith("web:"))
    cmd = line.split(" granian ", 1)[1]
    cmd = re.sub(r"\$\{PORT:-\d+\}", str(port), cmd)
    cmd = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", cmd)
    return [str(Path(BASE_DIR / ".venv" / "bin" / "granian")), *cmd.split()]


def test_killing_the_web_master_leaves_no_worker_serving(live):
    """GIVEN the web process as the Procfile starts it (a granian master, 2 workers)
    WHEN its master is killed with SIGKILL
    THEN its workers end too, and nothing serves on its port any more."""
    port = free_port()
    master = subprocess.Popen(web_command(port), env=server_env(), cwd=BASE_DIR)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the web process did not start"
            time.sleep(0.2)
        workers = psutil.Process(master.pid).children()
        assert len(workers) == 2
        master.send_signal(signal.SIGKILL)
        master.wait(10)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == []
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
            raise AssertionError("something still serves on the port")
        except httpx.TransportError:
            pass
    finally:  # none left behind, even when the test fails
        for proc in [*workers, master]:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                proc.kill()
