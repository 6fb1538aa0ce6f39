"""A small closed-loop HTTP/1.1 load generator: C keep-alive connections, each sending
one request after another for a fixed time, recording every latency.

    python bench/load.py URL --connections 32 --duration 15 --header "Authorization: Bearer ak_..."

It prints one JSON object: requests, errors, requests_per_s, p50_ms, p90_ms, p99_ms,
max_ms. It is a fallback for machines without ``wrk``: being Python, it costs more CPU
per request than the server it measures would like to share.
"""

import argparse
import asyncio
import json
import statistics
import time
from urllib.parse import urlsplit


def build_request(url: str, headers: list[str]) -> bytes:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def connection(url: str, request: bytes, stop_at: float, out: dict) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            out["latencies"].append(time.perf_counter() - started)
            if status != 200:
                out["errors"] += 1
    finally:
        writer.close()


async def run(url: str, connections: int, duration: float, headers: list[str]) -> dict:
    request = build_request(url, headers)
    out: dict = {"latencies": [], "errors": 0}
    started = time.perf_counter()
    stop_at = started + duration
    await asyncio.gather(*(connection(url, request, stop_at, out) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies = sorted(out["latencies"])
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "errors": out["errors"],
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p90_ms": round(cuts[89] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", "-c", type=int, default=32)
    parser.add_argument("--duration", "-d", type=float, default=15.0)
    parser.add_argument("--header", "-H", action="append", default=[])
    args = parser.parse_args()
    coro = run(args.url, args.connections, args.duration, args.header)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(coro)
    else:
        result = uvloop.run(coro)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
