"""The web process's memory for the largest image a job may carry (see bench/README.md).

    .venv/bin/python bench/upload.py               # 5 submissions of one max-size image
    .venv/bin/python bench/upload.py --idempotency # each with an Idempotency-Key
    .venv/bin/python bench/upload.py --replay      # one key: the first, then replays
    .venv/bin/python bench/upload.py --plain-drf   # the usual stack (bench/plain_drf.py)

Starts the Procfile's web process alone (one worker) on the bench database and submits
``POST /api/v1/jobs`` for ``ocr-text`` with a PNG of random pixels just under
JOB_IMAGE_MAX_BYTES, one at a time (no Island is online: each job is checked, stored and
queued). The RSS of the web process (master and worker) is sampled every 2 ms: the
figure is its peak during each request over its level just before (glibc's mmap
threshold fixed, so that freed buffers leave the RSS at once).
"""

import argparse
import base64
import io
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
from common import bench_env, rss_mb, start_web, stop
from PIL import Image
from relay import accounts, ensure_streams_exist, setup_django

MAX_BYTES = 8 * 1024 * 1024  # JOB_IMAGE_MAX_BYTES's default


def largest_png(limit: int) -> bytes:
    """A PNG of random pixels (it does not compress) as close to ``limit`` bytes as fits."""
    noise = random.Random(20)
    width = 1670
    height = limit // (width * 3)
    while True:
        image = Image.frombytes("RGB", (width, height), noise.randbytes(width * height * 3))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        if buffer.tell() <= limit:
            return buffer.getvalue()
        height -= 2


def peak_during(pid: int, work) -> tuple[float, float]:
    """RSS before ``work()`` and its peak while it runs, in MiB."""
    before, peak, running = rss_mb(pid), [0.0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        work()
    finally:
        running[0] = False
        sampler.join()
    return before, peak[0]


def plain_drf(env: dict[str, str]) -> str:
    """The web process with bench/plain_drf.py's view, and its table; its path."""
    from django.db import connection
    from plain_drf import CREATE_TABLE

    with connection.cursor() as cursor:
        cursor.execute(CREATE_TABLE)
    env["DJANGO_SETTINGS_MODULE"] = "plain_drf"
    env["PYTHONPATH"] += os.pathsep + str(Path(__file__).parent)
    return "/plain/jobs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument(
        "--idempotency", action="store_true", help="send an Idempotency-Key (a safe retry)"
    )
    parser.add_argument(
        "--plain-drf", action="store_true", help="the same body to a plain DRF view instead "
        "(bench/plain_drf.py)"
    )  # fmt: skip
    parser.add_argument(
        "--replay", action="store_true", help="one Idempotency-Key: the requests after the "
        "first are replays of its answer"
    )  # fmt: skip
    args = parser.parse_args()
    # A fixed mmap threshold: glibc then returns every large buffer to the system when it
    # is freed (its default raises the threshold as buffers are freed, and keeps them in
    # the heap), so the RSS follows what the request holds at each moment.
    env = bench_env(JOB_QUEUE_TIMEOUT_SECONDS="60", MALLOC_MMAP_THRESHOLD_="131072")
    setup_django(env)
    path = "/api/v1/jobs"
    if args.plain_drf:
        path = plain_drf(env)
    ensure_streams_exist()
    from compute.models import Island
    from compute.seed import seed_cargos

    seed_cargos()
    Island.objects.update(status="offline")  # the jobs wait: no Island reads the image
    [(_, key)] = accounts(1, "upload")
    from django.db import connections

    connections.close_all()
    png = largest_png(MAX_BYTES)
    body = json.dumps({"workload": "ocr-text", "input": {"image": base64.b64encode(png).decode()}})
    web, url = start_web(env, workers=1)
    runs = []
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:

            def submit() -> None:
                key = "replayed" if args.replay else uuid.uuid4().hex
                extra = {"Idempotency-Key": key} if args.idempotency or args.replay else {}
                response = client.post(path, content=body, headers=extra)
                if response.status_code != 201:
                    raise SystemExit(f"{response.status_code}: {response.text[:300]}")

            for _ in range(args.requests):
                started = time.monotonic()
                before, peak = peak_during(web.pid, submit)
                runs.append(
                    {"before": before, "peak": peak, "ms": (time.monotonic() - started) * 1000}
                )
        growth = [r["peak"] - r["before"] for r in runs]
        print(json.dumps({
            "png_bytes": len(png), "body_bytes": len(body), "requests": len(runs),
            "view": "plain DRF" if args.plain_drf else "ours",
            "idempotency_key": "one, replayed" if args.replay else args.idempotency,
            "rss_before_first_mb": round(runs[0]["before"], 1),
            "rss_before_last_mb": round(runs[-1]["before"], 1),
            "growth_first_mb": round(growth[0], 1),
            "growth_median_mb": round(statistics.median(growth), 1),
            "growth_max_mb": round(max(growth), 1),
            "request_ms_median": round(statistics.median(r["ms"] for r in runs)),
        }))  # fmt: skip
    finally:
        stop(web)


if __name__ == "__main__":
    sys.exit(main())
