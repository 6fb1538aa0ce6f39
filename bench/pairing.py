"""Pairing latency (issue 3, bench b; see bench/README.md).

    .venv/bin/python bench/pairing.py --iterations 200

Starts what it needs on the services that ``config.stack`` resolves (Postgres, Redis,
NATS; embedded ones when a URL is missing or unreachable): a scratch database (default
``archipelago_bench_pairing``, created and migrated when missing), the production web
process (granian as in the Procfile, or uvicorn) and, for ``--agents``, the NATS bridge.
One signed-in account (a real session cookie and CSRF token) then pairs, one at a time:

- desktop: an Island gets a code (``pairing.services.request_pairing_code``, what the
  bridge answers on ``coordinator.hosts.pairing``), this process subscribes to
  ``host.{id}.paired`` as the agent does, posts the code to ``/pair`` (the confirmation
  step, not timed), then times ``POST /pair/confirm`` → the ``paired`` message (and the
  HTTP response);
- mobile: a pairing session (``start_mobile_session``, what ``/pair/mobile`` does), its
  websocket ``ws/pair/mobile/<id>/`` opened with the session cookie, then times
  ``POST /api/v1/pairing/mobile/claim`` → the ``island.paired`` websocket message;
- agents (``--agents N``): N real reference agents (``island agent``) in turn: the bench
  reads ``Pairing code: …`` from the agent's output, confirms it, and times the confirm
  request → the agent's ``Paired with account …`` line.

Every timestamp is ``time.perf_counter()`` in this one asyncio process. Prints p50, p95,
p99 and max in ms and one JSON line.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import create_database, nats_options, stop

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/archipelago_bench_pairing"
EMAIL = "pairing-bench@example.com"
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
CODE_LINE = re.compile(r"Pairing code: ([A-Z0-9]{6})")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_environment(args: argparse.Namespace) -> dict[str, str]:
    """Resolve the services like ``make test`` does; returns the web process's env."""
    from config import stack

    os.environ["DATABASE_URL"] = args.database_url
    state = Path(os.environ.get("STATE_DIR", BASE_DIR / ".state" / "bench-pairing"))
    env = stack.base_env(state, try_local=True)
    port = free_port()
    env.update(
        DEBUG="false",
        DJANGO_SETTINGS_MODULE="config.settings",
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        PORT=str(port),
        DB_POOL_SIZE=env.get("DB_POOL_SIZE", "10"),
        FAST_PASSWORD_HASHER="true",
        # One IP claims and confirms hundreds of codes here; nothing fails, but the
        # per-IP claim limit would refuse the 21st claim in a minute.
        PAIRING_CLAIMS_PER_IP="1000000",
        PYTHONPATH=os.pathsep.join([str(BASE_DIR), str(BASE_DIR / "cli")]),
        PYTHONUNBUFFERED="1",
    )
    os.environ.update(env)
    return env


def prepare_database(url: str) -> None:
    create_database(url)
    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def session_cookie() -> tuple[str, str]:
    """A signed-in session of the bench account (created with its grant when missing)."""
    from django.conf import settings
    from django.test import Client

    from compute.models import Island
    from pairing.models import MobilePairingSession, PairingAttempt
    from portal import services
    from portal.models import User

    user = User.objects.filter(email=EMAIL).first()
    if user is None:
        user = services.sign_up(email=EMAIL, password="correct horse battery")
    # Every run starts with an account without Islands or pairing history.
    MobilePairingSession.objects.filter(user=user).delete()
    PairingAttempt.objects.filter(user=user).delete()
    Island.objects.filter(owner=user).delete()
    client = Client()
    client.force_login(user)
    return settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value


def new_desktop_code(index: int) -> tuple[str, str]:
    from compute.models import Island
    from pairing import services
    from sail import keys

    island = Island.objects.create(
        id=uuid.uuid4(),
        nkey=keys.public_key(keys.new_seed()),
        name=f"bench-desktop-{index}",
        region="eu-west",
        agent_version="bench",
        capabilities={"gpu_model": "RTX 4090", "gpu_vram_mb": 24576, "cpu_cores": 16},
        runtimes=["container", "llmcpp"],
    )
    return str(island.pk), services.request_pairing_code(str(island.pk), key=island.nkey)["code"]


def new_mobile_session() -> tuple[str, str]:
    from pairing import mobile
    from portal.models import User

    session, code = mobile.start_mobile_session(user=User.objects.get(email=EMAIL))
    return str(session.pk), code


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        cmd, cwd=BASE_DIR, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def web_command(server: str, workers: int, port: str) -> list[str]:
    if server == "granian":  # the Procfile's web process
        return [
            sys.executable, "-m", "granian", "--interface", "asginl", "--host", "127.0.0.1",
            "--port", port, "--workers", str(workers), "--loop", "uvloop", "--no-access-log",
            "--log-level", "warning", "config.asgi:application",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
        "--port", port, "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (the web workers)."""
    import psutil

    main = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [main, *main.children(recursive=True)])


def summary(values_s: list[float]) -> dict:
    ms = sorted(v * 1000 for v in values_s)
    if not ms:
        return {"n": 0}

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, max(0, round(p / 100 * len(ms)) - 1))], 1)

    return {
        "n": len(ms),
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "max": round(ms[-1], 1),
        "mean": round(statistics.fmean(ms), 1),
    }


class Bench:
    def __init__(self, args: argparse.Namespace, env: dict[str, str], web_pid: int) -> None:
        import httpx

        self.args = args
        self.web_pid = web_pid
        self.web_cpu_ms_per_iteration = 0.0
        self.env = env
        self.url = env["PUBLIC_URL"]
        self.db = ThreadPoolExecutor(1)  # Django ORM off the event loop, one connection
        self.http = httpx.AsyncClient(base_url=self.url, timeout=10)
        self.cookie_header = ""
        self.csrf = ""
        self.results: dict[str, list[float]] = {
            "confirm_to_nats_paired": [],
            "confirm_http_response": [],
            "claim_to_websocket": [],
            "claim_http_response": [],
            "confirm_to_agent_paired_line": [],
        }

    async def orm(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.db, fn, *args)

    async def sign_in(self) -> None:
        name, value = await self.orm(session_cookie)
        self.http.cookies.set(name, value)
        page = await self.http.get("/pair")
        page.raise_for_status()
        match = CSRF_INPUT.search(page.text)
        assert match, "no CSRF token on /pair"
        self.csrf = match.group(1)
        self.cookie_header = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())

    async def confirm(self, code: str, timed: asyncio.Future | None = None) -> tuple[float, float]:
        """Preview (untimed), then the confirm request; returns (t0, t_response)."""
        form = {"code": code, "csrfmiddlewaretoken": self.csrf}
        headers = {"Origin": self.url, "Referer": f"{self.url}/pair"}
        preview = await self.http.post("/pair", data=form, headers=headers)
        assert preview.status_code == 200, (preview.status_code, preview.text[:300])
        t0 = time.perf_counter()
        response = await self.http.post("/pair/confirm", data=form, headers=headers)
        t_response = time.perf_counter()
        assert response.status_code == 200, (response.status_code, response.text[:300])
        return t0, t_response

    async def desktop(self, nc, index: int, record: bool) -> None:
        host_id, code = await self.orm(new_desktop_code, index)
        arrived: asyncio.Future = asyncio.get_running_loop().create_future()

        async def on_paired(msg) -> None:
            if not arrived.done():
                arrived.set_result(time.perf_counter())

        sub = await nc.subscribe(f"host.{host_id}.paired", cb=on_paired)
        await nc.flush()
        t0, t_response = await self.confirm(code)
        t_paired = await asyncio.wait_for(arrived, 10)
        await sub.unsubscribe()
        if record:
            self.results["confirm_to_nats_paired"].append(t_paired - t0)
            self.results["confirm_http_response"].append(t_response - t0)

    async def mobile(self, index: int, record: bool) -> None:
        import websockets

        session_id, code = await self.orm(new_mobile_session)
        ws_url = self.url.replace("http://", "ws://") + f"/ws/pair/mobile/{session_id}/"
        headers = {"Cookie": self.cookie_header, "Origin": self.url}
        async with websockets.connect(ws_url, additional_headers=headers) as ws:

            async def receive() -> tuple[float, dict]:
                message = await ws.recv()
                return time.perf_counter(), json.loads(message)

            received = asyncio.create_task(receive())
            body = {
                "code": code,
                "device_name": f"Pixel 8 #{index}",
                "platform": "android",
                "hardware": {"model": "Pixel 8", "ram_mb": 8192, "cpu_cores": 9},
                "runtimes": ["onnx"],
                "app_version": "1.0.0",
            }
            t0 = time.perf_counter()
            response = await self.http.post("/api/v1/pairing/mobile/claim", json=body)
            t_response = time.perf_counter()
            assert response.status_code == 201, (response.status_code, response.text[:300])
            t_ws, event = await asyncio.wait_for(received, 10)
            assert event["type"] == "island.paired", event
            assert event["session_id"] == session_id, event
        if record:
            self.results["claim_to_websocket"].append(t_ws - t0)
            self.results["claim_http_response"].append(t_response - t0)

    async def agent(self, index: int) -> None:
        """One real reference agent: start, read its code, confirm, read "Paired with"."""
        folder = Path(self.env["STATE_DIR"]) / "bench-agents" / str(index)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "state.json").unlink(missing_ok=True)
        config = folder / "config.toml"
        config.write_text(
            f'[host]\nname = "bench-agent-{index}"\nregion = "eu-west"\n'
            f'[coordinator]\nnats_url = "{self.env["NATS_URL"]}"\napi_url = "{self.url}"\n'
            f'[agent]\nstate_dir = "{folder}"\nruntime = "mock"\n'
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "island_cli.agent", "--config", str(config),
            cwd=BASE_DIR, env=self.env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            code = None
            while code is None:
                line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
                assert line, "the agent stopped before printing a code"
                match = CODE_LINE.search(line)
                code = match.group(1) if match else None
            # A person reads the code and types it: the agent has finished starting.
            await asyncio.sleep(self.args.agent_delay)
            t0, _ = await self.confirm(code)
            while True:
                line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
                assert line, "the agent stopped before printing that it is paired"
                if line.startswith("Paired with account"):
                    self.results["confirm_to_agent_paired_line"].append(time.perf_counter() - t0)
                    break
        finally:
            proc.terminate()
            await proc.wait()

    async def run(self) -> None:
        import nats

        await self.sign_in()
        nc = await nats.connect(self.env["NATS_URL"], **nats_options(self.env))
        try:
            for i in range(self.args.warmup):
                await self.desktop(nc, i, record=False)
                await self.mobile(i, record=False)
            cpu = cpu_seconds(self.web_pid)
            for i in range(self.args.warmup, self.args.warmup + self.args.iterations):
                await self.desktop(nc, i, record=True)
                await self.mobile(i, record=True)
                if self.args.pause:
                    await asyncio.sleep(self.args.pause)
            cpu = cpu_seconds(self.web_pid) - cpu
            self.web_cpu_ms_per_iteration = round(cpu * 1000 / max(1, self.args.iterations), 1)
            for i in range(self.args.agents):
                await self.agent(i)
        finally:
            await nc.close()
            await self.http.aclose()


def wait_healthy(url: str, proc: subprocess.Popen) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the web process exited; see its log")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the web process did not become healthy")


def main(args: argparse.Namespace) -> dict:
    env = prepare_environment(args)
    prepare_database(env["DATABASE_URL"])
    logs = Path(env["STATE_DIR"]) / "logs"
    procs = [spawn(web_command(args.server, args.workers, env["PORT"]), env, logs / "web.log")]
    if args.agents:
        cmd = [sys.executable, "manage.py", "sail_bridge"]
        procs.append(spawn(cmd, env, logs / "bridge.log"))
    load_before = os.getloadavg()
    try:
        wait_healthy(env["PUBLIC_URL"], procs[0])
        bench = Bench(args, env, procs[0].pid)
        started = time.monotonic()
        asyncio.run(bench.run())
        seconds = time.monotonic() - started
    finally:
        for proc in procs:
            stop(proc)
    return {
        "server": f"{args.server} x{args.workers}",
        "iterations": args.iterations,
        "seconds": round(seconds, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        # preview + confirm + claim (+ the websocket handshake) in the web process
        "web_cpu_ms_per_iteration": bench.web_cpu_ms_per_iteration,
        **{name: summary(values) for name, values in bench.results.items()},
    }


def print_table(result: dict) -> None:
    print(f"\n{result['server']}, {result['iterations']} iterations, {result['seconds']} s")
    print(f"load average before {result['loadavg_before']}, after {result['loadavg_after']}")
    print(f"web process CPU per iteration: {result['web_cpu_ms_per_iteration']} ms")
    print(f"| {'measure':<30} | {'n':>4} | p50 ms | p95 ms | p99 ms | max ms |")
    print(f"|{'-' * 32}|-----:|-------:|-------:|-------:|-------:|")
    for name, row in result.items():
        if isinstance(row, dict) and row.get("n"):
            cells = " | ".join(f"{row[k]:>6}" for k in ("p50", "p95", "p99", "max"))
            print(f"| {name:<30} | {row['n']:>4} | {cells} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--agents", type=int, default=10, help="real agents paired at the end")
    parser.add_argument(
        "--agent-delay", type=float, default=3.0, help="seconds from code to confirm"
    )
    parser.add_argument("--server", choices=["granian", "uvicorn"], default="granian")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between iterations")
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    return parser.parse_args()


if __name__ == "__main__":
    outcome = main(parse_args())
    print(json.dumps(outcome))
    print_table(outcome)
