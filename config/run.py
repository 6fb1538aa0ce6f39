"""``make run``: prepare the database once, then start every process of the Procfile.

Django is set up once, in this process, for the preparation steps (migrate when a
migration is pending, collectstatic when the static files changed, the Cargo catalog, the
demo account); then honcho starts the Procfile's processes plus one demo Island, and
Ctrl-C stops them all (the embedded redis-server and nats-server go last, see
config/stack.py).
"""

import argparse
import hashlib
import io
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from config.console import ConsolePrinter
from config.shell import BASE_DIR, VENV_BIN, reachable, say

PROCFILE = BASE_DIR / "Procfile"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def read_procfile(path: Path = PROCFILE) -> dict[str, str]:
    from honcho.environ import parse_procfile

    return dict(parse_procfile(path.read_text()).processes)


def web_address(env: dict[str, str]) -> tuple[str, int, str]:
    """The bind host and port (HOST, PORT) and the URL a person should open."""
    host = env.get("HOST") or "127.0.0.1"
    try:
        port = int(env.get("PORT") or 8000)
    except ValueError:
        raise SystemExit(f"[run] PORT must be a number, got {env['PORT']!r}") from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return host, port, f"http://{shown}:{port}"


def configure(env: dict[str, str]) -> str:
    """Fill in the settings ``make run`` decides; returns the URL to open."""
    host, port, url = web_address(env)
    env["HOST"], env["PORT"] = host, str(port)
    env.setdefault("PUBLIC_URL", url)
    public_host = url.split("//", 1)[1].rsplit(":", 1)[0]
    if "ALLOWED_HOSTS" not in env and public_host not in LOCAL_HOSTS:
        env["ALLOWED_HOSTS"] = ",".join([*LOCAL_HOSTS, public_host])
    if reachable(f"tcp://{host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{port}", port):  # noqa: S104
        raise SystemExit(f"[run] port {port} is already in use: stop that server or set PORT=")
    return url


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    # This process only prepares (migrations, streams, the demo account) before the
    # others start: its console shows warnings and errors, as theirs does.
    logging.disable(logging.INFO)


def migrate() -> None:
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from core.squashes import half_applied  # Django is set up by now (setup_django)

    executor = MigrationExecutor(connection)
    if problems := half_applied(executor.loader):
        raise SystemExit("\n".join(f"[stack] {problem}" for problem in problems))
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not plan:
        say("migrations: up to date")
        return
    say(f"migrations: applying {len(plan)}")
    call_command("migrate", interactive=False, verbosity=0)


def static_fingerprint() -> str:
    from django.contrib.staticfiles.finders import get_finders

    digest = hashlib.sha256()
    for finder in get_finders():
        for path, storage in finder.list([]):
            stat = os.stat(storage.path(path))
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def collect_static() -> None:
    """With DEBUG off WhiteNoise serves STATIC_ROOT: collect only when a file changed."""
    from django.conf import settings
    from django.core.management import call_command

    root = Path(settings.STATIC_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    if settings.DEBUG:
        return  # WhiteNoise serves straight from the app folders
    stamp = root / ".fingerprint"
    fingerprint = static_fingerprint()
    if stamp.exists() and stamp.read_text() == fingerprint:
        return
    say("static files: collecting")
    call_command("collectstatic", interactive=False, verbosity=0)
    stamp.write_text(fingerprint)


def prepare(*, new_demo_key: bool = False) -> str:
    """Migrate, collect static files, seed the catalog; returns the demo account's lines."""
    from django.core.management import call_command, get_commands
    from django.db import connections

    migrate()
    collect_static()
    if "seed_cargos" in get_commands():
        call_command("seed_cargos", stdout=io.StringIO())
    # Before any process starts: an Island's first registration must find its stream.
    call_command("sail_setup", stdout=io.StringIO())
    out = io.StringIO()
    call_command("demo_account", new_key=new_demo_key, stdout=out)
    connections.close_all()  # the processes below open their own
    return out.getvalue()


def island_config(state: Path, env: dict[str, str], api_url: str) -> Path:
    import tomli_w

    path = state / "demo-island.toml"
    config = {
        "host": {"name": "demo-island", "region": "local"},
        "coordinator": {"nats_url": env["NATS_URL"], "api_url": api_url},
        "agent": {"runtime": "mock", "state_dir": str(state / "demo-island")},
    }
    path.write_text(tomli_w.dumps(config))
    return path


def processes(state: Path, env: dict[str, str], url: str, *, island: bool) -> dict[str, str]:
    procs = read_procfile()
    from django.core.management import get_commands

    if "sail_bridge" not in get_commands():
        say("bridge: no sail_bridge command yet, not started")
        procs.pop("bridge", None)
    island_bin = VENV_BIN / "island"
    if island and island_bin.exists():
        procs["island"] = f"island agent --config {island_config(state, env, url)}"
    # The web process first: on two cores, six processes importing Django at once keep
    # the landing page waiting for all of them (a second run's page: 10.5 s then, 5 now).
    wait = f"{sys.executable} -m config.stack wait-for-port {env['PORT']}"
    return {name: cmd if name == "web" else f"{wait} && {cmd}" for name, cmd in procs.items()}


def banner(url: str, demo: str, logs: Path, names: list[str]) -> str:
    """What the console shows once the web process answers."""
    shown = logs.relative_to(BASE_DIR) if logs.is_relative_to(BASE_DIR) else logs
    files = ", ".join(f"{name}.log" for name in names)
    return f"""
Demo account (its API key lasts across runs; --new-demo-key replaces it):
{demo.rstrip()}

Logs: {shown}/ holds {files}
  This console shows warnings, errors, the emails sent and the Island's pairing code;
  to follow everything: tail -f {shown}/*.log (or make run ARGS=--verbose)

  Open {url}/  (Ctrl-C stops everything)
"""


def announce_when_up(port: int, text: str, console: ConsolePrinter) -> None:
    def wait() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        console.announce(text)

    threading.Thread(target=wait, daemon=True).start()


def start(procs: dict[str, str], env: dict[str, str], console: ConsolePrinter) -> int:
    from honcho.manager import Manager

    manager = Manager(printer=console)
    for name, cmd in procs.items():
        manager.add_process(name, cmd, env=env, cwd=str(BASE_DIR))
    try:
        manager.loop()
    finally:
        console.close()
    # Stopped by Ctrl-C or SIGTERM: a clean exit, not an error.
    return 0 if manager.returncode in (130, 143) else (manager.returncode or 0)


def run(base_env: Callable[..., dict[str, str]], args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.stack run")
    parser.add_argument("--no-island", action="store_true", help="do not start the demo Island")
    parser.add_argument(
        "--new-demo-key", action="store_true", help="replace the demo account's API key"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="echo every line of every process (not only warnings)",
    )
    options = parser.parse_args(args)
    # SIGTERM before honcho takes over must still run the atexit clean-up of config.stack.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.monotonic()
    state = Path(os.environ.get("STATE_DIR") or BASE_DIR / ".state").resolve()
    env = base_env(state, try_local=False)
    url = configure(env)
    setup_django(env)
    demo = prepare(new_demo_key=options.new_demo_key)
    procs = processes(state, env, url, island=not options.no_island)
    say(f"ready in {time.monotonic() - started:.1f}s; starting {', '.join(procs)}")
    logs = state / "logs"
    console = ConsolePrinter(logs, list(procs), verbose=options.verbose)
    announce_when_up(int(env["PORT"]), banner(url, demo, logs, list(procs)), console)
    return start(procs, env, console)
