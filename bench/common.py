"""Pieces every benchmark script shares (they run as ``python bench/<name>.py``)."""

import fcntl
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

BASE_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/archipelago_bench"


def bench_env(**overrides: str) -> dict[str, str]:
    """The production settings on the bench's services, rate limits lifted. Without a
    ``NATS_URL``, a nats-server of the Sail's own configuration (sail.server_config) is
    started for the bench, as ``make test`` does."""
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    env.setdefault("SECRET_KEY", "bench-" + "x" * 50)
    env.setdefault("SAIL_SECRET", "bench-sail-" + "x" * 40)
    env.setdefault("SAIL_FIELD_PASSWORD", "bench-field")
    if not env.get("EMAIL_URL") and not env.get("EMAIL_BACKEND"):
        env["EMAIL_BACKEND"] = "django.core.mail.backends.console.EmailBackend"
    if "NATS_URL" not in env:
        from config.stack import embedded_nats

        state = BASE_DIR / ".state" / "bench"
        env["NATS_URL"] = embedded_nats(state, env["SAIL_SECRET"], env["SAIL_FIELD_PASSWORD"])
        os.environ.update(NATS_URL=env["NATS_URL"], SAIL_SECRET=env["SAIL_SECRET"])
        os.environ["SAIL_FIELD_PASSWORD"] = env["SAIL_FIELD_PASSWORD"]
    env.update(
        DEBUG="false",
        API_RATE_LIMIT="1000000000",
        API_ANON_RATE_LIMIT="1000000000",
        LOG_LEVEL="WARNING",
        **overrides,
    )
    env["PYTHONPATH"] = str(BASE_DIR)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def nats_options(env: dict[str, str] | None = None) -> dict[str, str]:
    """nats-py's options to connect as the coordinator (the Sail admits nobody else to
    everything)."""
    from sail.keys import CoordinatorKeys

    secret = (env or os.environ)["SAIL_SECRET"]
    return {"nkeys_seed_str": CoordinatorKeys.from_secret(secret).coordinator}


def create_database(url: str) -> None:
    """Create the Postgres database of ``url`` if it does not exist yet (every bench
    starts here, and waits here for any other bench of this checkout to end first)."""
    one_at_a_time()
    import psycopg
    from psycopg import sql

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup_django(env: dict[str, str]) -> None:
    """Create and migrate the bench database; Django is then usable in this process."""
    create_database(env["DATABASE_URL"])
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    vacuum(env["DATABASE_URL"])


def vacuum(url: str) -> None:
    """Tidy the bench database as autovacuum would (it may be off on a test machine, and
    earlier runs leave dead rows whose stale statistics mislead the planner)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


_held: list = []


def one_at_a_time() -> None:
    """Benches share Redis (Celery's queue) and NATS, and each deletes the Islands'
    ``host-*`` consumers it finds on ``JOBS``: two at once spoil each other (a bench's jobs
    then never start). A lock file of the checkout, held until the process ends."""
    if _held:
        return
    path = BASE_DIR / ".state" / "bench.lock"
    path.parent.mkdir(exist_ok=True)
    lock = path.open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another bench is running; waiting for it to end", file=sys.stderr, flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    _held.append(lock)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile_command(name: str) -> str:
    for line in (BASE_DIR / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise SystemExit(f"no {name!r} process in the Procfile")


def start_procfile(name: str, env: dict[str, str]) -> subprocess.Popen:
    """The Procfile's ``name`` process itself, with ``env``."""
    env = {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
    return subprocess.Popen(
        ["sh", "-c", "exec env " + procfile_command(name)], env=env, cwd=BASE_DIR
    )


def start_web(env: dict[str, str], workers: int = 2) -> tuple[subprocess.Popen, str]:
    """The production web process (the Procfile's ``web`` line) on a free port, once it
    answers ``/api/v1/health``; returns it and its base URL."""
    port = free_port()
    env = {**env, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    proc, url = start_procfile("web", env), f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"web server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("web server did not start")


def to_ms(text: str) -> float:
    """A duration as wrk prints it (``812.00us``, ``3.20ms``, ``1.02s``), in ms."""
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def tree(pid: int) -> list[psutil.Process]:
    """A process and its children (a server's workers)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MiB."""
    return sum(p.memory_info().rss for p in tree(pid)) / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far."""
    total = 0.0
    for proc in tree(pid):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _group(proc: psutil.Process) -> str:
    name = proc.name()
    if name.startswith("postgres"):
        return "postgres"
    if name.startswith(("nats-server", "redis-server", "wrk")):
        return name.split("-server")[0]
    return ""


def service_cpu() -> dict[str, float]:
    """CPU seconds used so far by the machine's Postgres, NATS, Redis and wrk processes
    (what a bench's own process tree does not show; subtract two readings)."""
    total: dict[str, float] = {}
    for proc in psutil.process_iter():
        try:
            group = _group(proc)
            if group:
                times = proc.cpu_times()
                total[group] = total.get(group, 0.0) + times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def cpu_ms_per(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """Milliseconds of CPU per unit of work, by service, between two :func:`service_cpu`
    readings."""
    return {
        name: round((after[name] - before.get(name, 0.0)) * 1000 / max(1, count), 3)
        for name in sorted(after)
    }
