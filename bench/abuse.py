"""The review's abuse of the limits (issue 17), replayed against the production web process.

    .venv/bin/python bench/abuse.py

Over real HTTP (and websockets) to the Procfile's web process, from many source addresses
(127.0.x.y: every loopback address is this machine's), with the default limits:

1. pairing: wrong mobile claims from 60 addresses x 20 (what the per-address claim limit
   lets through in a minute) until the total failure limit (1,000 an hour) is full; then a
   new account on a fresh address pairs a desktop Island with its valid code (/pair, then
   /pair/confirm), and an address that failed tries the valid code too;
2. login: 10 wrong passwords for an account from one address, then its owner signs in
   from another; 30 wrong passwords at /admin/login/ from a third;
3. websockets: one account opens 200 sockets on /ws/islands/.

Needs its own database (default ``archipelago_bench_abuse``, created and migrated) and
clears its own limits' keys in the Redis of ``REDIS_URL`` first. Prints one JSON line.
"""

import asyncio
import json
import os
import re
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import websockets
from common import bench_env, create_database, start_web, stop

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
DATABASE_URL = "postgres://postgres@127.0.0.1:5432/archipelago_bench_abuse"
PASSWORD = "correct horse battery"
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
RUN = uuid.uuid4().hex[:8]


def from_address(url: str, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=url, transport=transport, timeout=30)


def csrf(client: httpx.Client, path: str) -> str:
    match = CSRF_INPUT.search(client.get(path).text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def log_in(client: httpx.Client, email: str, password: str, path: str = "/login") -> int:
    form = {"username": email, "password": password, "csrfmiddlewaretoken": csrf(client, path)}
    return client.post(path, data=form, headers={"Referer": str(client.base_url)}).status_code


def prepare() -> None:
    """Migrate, and forget what an earlier run left in the limits."""
    import django

    django.setup()
    from django.core.management import call_command

    from core.redis import redis_client

    call_command("migrate", verbosity=0)
    client = redis_client()
    for pattern in ("pairing:*", "auth:*", "websockets:*", "rl:*"):
        stale = list(client.scan_iter(match=pattern, count=1000))
        if stale:
            client.delete(*stale)


def account(name: str, *, superuser: bool = False) -> str:
    """A new account of this run (an account with credits cannot be deleted); its email."""
    from portal import services
    from portal.models import User

    email = f"{name}-{RUN}@example.com"
    if superuser:
        User.objects.create_superuser(email=email, password=PASSWORD)
    else:
        services.sign_up(email=email, password=PASSWORD)
    return email


def island_code() -> str:
    from compute.models import Island
    from pairing import services
    from sail import keys

    island = Island.objects.create(id=uuid.uuid4(), nkey=keys.public_key(keys.new_seed()))
    return services.request_pairing_code(str(island.pk), key=island.nkey)["code"]


def pairing_attack(url: str) -> dict:
    from core.redis import redis_client

    statuses: Counter = Counter()
    started = time.monotonic()
    for n in range(60):
        with from_address(url, f"127.0.1.{n + 1}") as client:
            for _ in range(20):
                body = {"code": "ABCDEFGH", "device_name": "x", "platform": "android"}
                statuses[client.post("/api/v1/pairing/mobile/claim", json=body).status_code] += 1
    seconds = time.monotonic() - started
    failures = redis_client().zcard("pairing:fail:total")
    return {"claims": sum(statuses.values()), "seconds": round(seconds, 1),
            "statuses": dict(statuses), "failures_in_the_hour": failures}  # fmt: skip


def pair(url: str, address: str, name: str, code: str) -> dict:
    email = account(name)
    with from_address(url, address) as client:
        assert log_in(client, email, PASSWORD) == 302
        token = csrf(client, "/pair")
        answers = {}
        for step in ("/pair", "/pair/confirm"):
            form = {"code": code, "csrfmiddlewaretoken": token}
            response = client.post(step, data=form, headers={"Referer": url})
            answers[step] = response.status_code
            if response.status_code == 429:
                answers["retry_after"] = int(response.headers["Retry-After"])
                break
        return answers


def login_attack(url: str) -> dict:
    owner_email = account("owner")
    with from_address(url, "127.0.3.1") as stranger:
        wrong = [log_in(stranger, owner_email, "guess") for _ in range(11)]
    with from_address(url, "127.0.3.2") as owner:
        owner_status = log_in(owner, owner_email, PASSWORD)
    boss = account("boss", superuser=True)
    started = time.monotonic()
    with from_address(url, "127.0.3.3") as stranger:
        admin = Counter(log_in(stranger, boss, "guess", "/admin/login/") for _ in range(30))
    return {"wrong_passwords": dict(Counter(wrong)), "owner_from_another_address": owner_status,
            "admin_30_tries": dict(admin), "admin_seconds": round(time.monotonic() - started, 1)}  # fmt: skip


async def open_sockets(url: str, cookie: str, count: int) -> dict:
    ws_url = url.replace("http://", "ws://") + "/ws/islands/"
    headers = {"Cookie": cookie, "Origin": url}
    outcomes: Counter = Counter()
    held = []
    for _ in range(count):
        try:
            socket = await websockets.connect(ws_url, additional_headers=headers)
        except websockets.InvalidStatus as refused:
            outcomes[f"http {refused.response.status_code}"] += 1
            continue
        try:
            await asyncio.wait_for(socket.recv(), timeout=0.2)
        except TimeoutError:
            outcomes["open"] += 1
            held.append(socket)
        except websockets.ConnectionClosed as closed:
            outcomes[f"closed {closed.rcvd.code if closed.rcvd else None}"] += 1
    for socket in held:
        await socket.close()
    return dict(outcomes)


def websocket_attack(url: str) -> dict:
    email = account("sockets")
    with from_address(url, "127.0.4.1") as client:
        assert log_in(client, email, PASSWORD) == 302
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    return asyncio.run(open_sockets(url, cookie, 200))


def main() -> dict:
    os.environ.setdefault("DATABASE_URL", DATABASE_URL)
    env = bench_env()
    os.environ.update(env, DJANGO_SETTINGS_MODULE="config.settings")
    create_database(env["DATABASE_URL"])
    prepare()
    web, url = start_web(env)
    try:
        result = {"pairing_attack": pairing_attack(url)}
        result["new_account_fresh_address_valid_code"] = pair(
            url, "127.0.2.1", "legit", island_code()
        )
        result["failed_address_valid_code"] = pair(url, "127.0.1.1", "unlucky", island_code())
        result["login_attack"] = login_attack(url)
        result["websockets_200"] = websocket_attack(url)
    finally:
        stop(web)
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
