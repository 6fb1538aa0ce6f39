"""The newcomer's wait: a fresh clone's first ``make run`` (virtualenv, the locked
install with an empty package cache, migrations, every process) until the landing page
answers, then the second run of the same clone.

    python bench/first_run.py [--repo .] [--port 8765]

Nothing of this clone's state is reused: the clone, its ``.venv``, its ``.state`` and
uv's package cache are made in a temporary folder and removed afterwards. Service URLs
are unset, as on a fresh machine (embedded SQLite, redis-server and nats-server).
"""

import argparse
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def landing_after(clone: Path, env: dict[str, str], port: int, timeout: float = 300) -> float:
    """Seconds from ``make run`` until the landing page answers 200; stops it again."""
    started = time.monotonic()
    proc = subprocess.Popen(
        ["make", "run"],
        cwd=clone,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while time.monotonic() - started < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as answer:
                    if answer.status == 200:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"the landing page did not answer within {timeout:.0f} s")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--port", type=int, default=8765)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", options.repo, str(clone)], check=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "NATS_URL", "VIRTUAL_ENV", "STATE_DIR")
        }
        env.update(PORT=str(options.port), UV_CACHE_DIR=str(Path(tmp) / "uv-cache"))
        first = landing_after(clone, env, options.port)
        second = landing_after(clone, env, options.port)
    print(f"first make run: {first:.1f} s to the landing page (empty package cache)")
    print(f"second make run: {second:.1f} s")


if __name__ == "__main__":
    main()
