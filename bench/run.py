"""Compare ASGI servers on authenticated ``GET /api/v1/account`` (see bench/README.md).

    .venv/bin/python bench/run.py                       # every server, 2 workers, 32 connections
    .venv/bin/python bench/run.py --servers granian --workers 1,2 --duration 20

Each server runs the production configuration (DEBUG off, Postgres, Redis: the real
rate-limit counter is incremented on every request, with a limit high enough never to
answer 429); granian runs the Procfile's web command itself. The load comes from ``wrk``
when it is installed, else from bench/load.py.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import httpx
from common import (
    BASE_DIR,
    BIN,
    bench_env,
    cpu_seconds,
    free_port,
    procfile_command,
    setup_django,
    to_ms,
)

sys.path.insert(0, str(BASE_DIR))
APP = "config.asgi:application"


def server_command(server: str, port: int, workers: int) -> list[str]:
    host = ["127.0.0.1", str(port)]
    if server == "daphne":  # one process: daphne has no worker option
        return [str(BIN / "daphne"), "-b", host[0], "-p", host[1], "-v", "0", APP]
    if server == "uvicorn":
        return [
            str(BIN / "uvicorn"), APP, "--host", host[0], "--port", host[1],
            "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    if server == "granian":  # the production command itself: the Procfile's web line
        return ["sh", "-c", "exec env " + procfile_command("web")]
    raise SystemExit(f"unknown server {server!r}")


def server_env(env: dict[str, str], port: int, workers: int) -> dict[str, str]:
    """What the Procfile's web command reads; uvicorn and daphne get the same pool."""
    env = {**env, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    env.setdefault("DB_POOL_SIZE", "10")  # the Procfile's default
    return env


def prepare(env: dict[str, str]) -> str:
    """Migrate the bench database and return a fresh read key of the bench account."""
    setup_django(env)
    from portal import services
    from portal.models import User

    user = User.objects.filter(email="bench@example.com").first()
    if user is None:
        user = services.sign_up(email="bench@example.com", password=None)
    return services.create_api_key(user=user, name="bench", scopes=["read"])[1]


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def run_wrk(url: str, key: str, connections: int, duration: float) -> dict:
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "--latency",
        "-H", f"Authorization: Bearer {key}", url,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s*(50|90|99)%\s+([\d.]+(?:us|ms|s|m))", out, re.MULTILINE))
    if len(latency) != 3:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "errors": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(0) if errors else "",
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": round(to_ms(latency["50"]), 2),
        "p90_ms": round(to_ms(latency["90"]), 2),
        "p99_ms": round(to_ms(latency["99"]), 2),
    }


def run_python(url: str, key: str, connections: int, duration: float) -> dict:
    cmd = [
        sys.executable, str(BASE_DIR / "bench" / "load.py"), url, "-c", str(connections),
        "-d", str(duration), "-H", f"Authorization: Bearer {key}",
    ]  # fmt: skip
    return json.loads(subprocess.run(cmd, capture_output=True, check=True, text=True).stdout)


def measure(server: str, workers: int, args: argparse.Namespace, env: dict, key: str) -> dict:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = server_command(server, port, workers)
    # A session of its own: the server and its workers are stopped together.
    proc = subprocess.Popen(
        command, env=server_env(env, port, workers), cwd=BASE_DIR, start_new_session=True
    )
    try:
        wait_until_up(base, proc)
        url = f"{base}/api/v1/account"
        check = httpx.get(url, headers={"Authorization": f"Bearer {key}"})
        assert check.status_code == 200, check.text
        load = run_wrk if args.loadgen == "wrk" else run_python
        load(url, key, args.connections, args.warmup)
        load_before = os.getloadavg()[0]  # what other programs put on the machine
        cpu_before = cpu_seconds(proc.pid)
        result = load(url, key, args.connections, args.duration)
        cpu = cpu_seconds(proc.pid) - cpu_before
        result["server_cpu_ms_per_request"] = round(cpu * 1000 / max(result["requests"], 1), 2)
        result["load_before"] = round(load_before, 2)
        result["load_after"] = round(os.getloadavg()[0], 2)  # this benchmark included
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # workers left behind, if any
        proc.wait()
    return {"server": server, "workers": 1 if server == "daphne" else workers, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description="Compare ASGI servers (bench/README.md)")
    parser.add_argument("--servers", default="daphne,uvicorn,granian")
    parser.add_argument("--workers", default="2", help="comma-separated worker counts")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    default_loadgen = "wrk" if shutil.which("wrk") else "python"
    parser.add_argument("--loadgen", choices=["wrk", "python"], default=default_loadgen)
    args = parser.parse_args()

    env = bench_env()
    key = prepare(env)
    results = []
    for server in args.servers.split(","):
        counts = [1] if server == "daphne" else [int(n) for n in args.workers.split(",")]
        for workers in counts:
            result = measure(server, workers, args, env, key)
            print(json.dumps(result), flush=True)
            results.append(result)

    print(f"\n{args.connections} connections, {args.duration:g} s, load from {args.loadgen}\n")
    print(
        "| server | workers | requests/s | p50 ms | p90 ms | p99 ms | non-200 "
        "| server CPU ms/req | load avg before → after |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(
            f"| {r['server']} | {r['workers']} | {r['requests_per_s']:.0f} | {r['p50_ms']} "
            f"| {r['p90_ms']} | {r['p99_ms']} | {r['errors']} | {r['server_cpu_ms_per_request']} "
            f"| {r['load_before']} → {r['load_after']} |"
        )


if __name__ == "__main__":
    main()
