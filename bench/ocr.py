"""OCR job time for a 1-megapixel image, the coordinator's overhead apart from the
Island's own time, and the Island's memory (see bench/README.md).

    .venv/bin/python bench/ocr.py                  # 10 jobs, one at a time
    .venv/bin/python bench/ocr.py --jobs 20 --size 1000x1000

Starts the whole coordinator (the Procfile's web process, a Celery worker, the NATS
bridge) on the bench database and one reference Island agent (``island agent``, its
onnx runtime), paired as /pair does. A warm-up job loads the models; then each job is
timed at the client from ``POST /api/v1/jobs`` to the ``done`` event of its stream
(opened right after the POST). The Island's own time is the job's
``usage.milliseconds`` (decoding, detection, recognition); the overhead is the rest
(upload, checks, placement, NATS both ways, the bridge, the database, the stream). The
agent's resident memory (RSS) is sampled every 20 ms: before the first job, and its peak.
"""

import argparse
import base64
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import tomli_w
from common import BASE_DIR, bench_env, rss_mb, start_web, stop
from PIL import Image, ImageDraw, ImageFont
from relay import accounts, ensure_streams_exist, setup_django, start

WORDS = [
    "islands",
    "read",
    "the",
    "text",
    "of",
    "an",
    "image",
    "with",
    "models",
    "shipped",
    "in",
    "a",
    "wheel",
]


def page(width: int, height: int) -> bytes:
    """A PNG page of text lines, black on white."""
    image = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(32)
    for row, y in enumerate(range(30, height - 40, 60)):
        line = " ".join(WORDS[(row + i) % len(WORDS)] for i in range(5))
        draw.text((30, y), f"{row + 1}. {line}", fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def start_agent(env: dict[str, str], url: str, home: Path) -> subprocess.Popen:
    config = home / "config.toml"
    config.write_text(tomli_w.dumps({
        "host": {"name": "bench-ocr", "region": "local"},
        "coordinator": {"nats_url": env["NATS_URL"], "api_url": url},
        "pricing": {"workloads": {"ocr-text": "0.001"}},
        "agent": {"state_dir": str(home / "state"), "heartbeat_interval": 1.0},
    }))  # fmt: skip
    agent_env = {**env, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "island_cli.agent", "--config", str(config)]
    return subprocess.Popen(command, env=agent_env, stdout=subprocess.PIPE, text=True)


def pair(agent: subprocess.Popen, user: object) -> None:
    """Pair the agent as /pair does, with the code it prints; wait until it is paired."""
    from pairing import services as pairing

    assert agent.stdout is not None
    for line in agent.stdout:
        if "Pairing code:" in line:
            code = line.split("Pairing code:")[1].strip()
            for _ in range(100):  # its registration reaches the database first
                try:
                    pairing.confirm_pairing(code=code, user=user, ip="127.0.0.1")
                    break
                except Exception:
                    time.sleep(0.1)
        if "Paired with account" in line:
            threading.Thread(target=agent.stdout.read, daemon=True).start()  # drain
            return
    raise SystemExit("the agent stopped before it was paired")


class Peak:
    """The highest RSS of a process (and its children) while it runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.running = pid, 0.0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while self.running:
            with contextlib.suppress(psutil.Error):  # a child ended while it was read
                self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return self.peak


def one_job(client: httpx.Client, image: str) -> dict:
    sent = time.monotonic()
    response = client.post("/api/v1/jobs", json={"workload": "ocr-text", "input": {"image": image}})
    response.raise_for_status()
    job_id = response.json()["data"]["id"]
    with client.stream("GET", f"/api/v1/jobs/{job_id}/stream", timeout=120) as stream:
        for line in stream.iter_lines():
            if line in ("event: done", "event: error"):
                break
    done = time.monotonic()
    job = client.get(f"/api/v1/jobs/{job_id}").json()["data"]
    while job["status"] in ("pending", "queued", "running"):  # the database follows the stream
        time.sleep(0.05)
        job = client.get(f"/api/v1/jobs/{job_id}").json()["data"]
    if job["status"] != "completed":
        raise SystemExit(f"job {job_id} {job['status']}: {job['error']}")
    total = (done - sent) * 1000
    island = job["usage"]["milliseconds"]
    lines = len(job["result"]["lines"])
    return {"total_ms": total, "island_ms": island, "overhead_ms": total - island, "lines": lines}


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--size", default="1000x1000", help="WIDTHxHEIGHT of the page")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    env = bench_env()
    setup_django(env)
    ensure_streams_exist()
    from compute.models import Island
    from compute.seed import seed_cargos

    seed_cargos()
    Island.objects.update(status="offline")  # earlier runs' Islands get no job
    [(user, key)] = accounts(1, "ocr")
    from django.db import connections

    connections.close_all()
    worker = start(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads",
         "--concurrency", "8", "--loglevel", "WARNING", "--without-heartbeat",
         "--without-mingle", "--without-gossip"], env,
    )  # fmt: skip
    bridge = start([sys.executable, str(BASE_DIR / "manage.py"), "sail_bridge"], env)
    web, url = start_web(env)
    home = Path(tempfile.mkdtemp(prefix="bench-ocr-"))
    agent = start_agent(env, url, home)
    try:
        pair(agent, user)
        time.sleep(2)  # a heartbeat makes it online
        image = base64.b64encode(page(width, height)).decode()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            idle = rss_mb(agent.pid)
            peak = Peak(agent.pid)
            warm = one_job(client, image)  # loads the models
            runs = [one_job(client, image) for _ in range(args.jobs)]
            top = peak.stop()
        print(json.dumps({
            "image": f"{width}x{height}", "png_bytes": len(image) * 3 // 4, "jobs": len(runs),
            "lines_read": runs[0]["lines"], "first_job_ms": round(warm["total_ms"]),
            **{key: summary([r[key] for r in runs]) for key in ("total_ms", "island_ms", "overhead_ms")},
            "agent_rss_mb": {"idle": round(idle), "peak": round(top)},
        }))  # fmt: skip
    finally:
        stop(agent)
        for proc in (web, bridge, worker):
            stop(proc)


if __name__ == "__main__":
    main()
