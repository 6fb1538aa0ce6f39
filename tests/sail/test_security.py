"""The Sail's security against a real nats-server with the production configuration
(sail.server_config) and the real auth callout (the bridge of the ``stack`` fixture).

Identities: no credentials, wrong credentials, a key nobody paired, Island X (paired,
its own key), the shared field user, and the coordinator. Each tries the attacks of the
security review against Island Y and user B (README, "The Sail's security"): read what
is not its own, forge an Island's results, inject client events, take another Island's
pairing code, answer in the coordinator's place, speak for another Island, assign jobs,
administer JetStream. Each is refused by the server, or (the field user, who may speak
for field Islands) reaches the coordinator and changes nothing.
"""

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from django.conf import settings
from django.utils import timezone

from compute.models import Island, Job
from compute.seed import seed_cargos
from pairing import mobile as pairing_mobile
from pairing import services as pairing
from pairing.models import PairingCode
from portal import services as accounts
from sail import keys
from sail.client import credentials
from tests.e2e.conftest import eventually
from tests.factories import IslandFactory, JobFactory, UserFactory
from tests.sail.peers import Peer, refused_to_connect

WAIT = 10.0


def key_options(seed: str) -> dict:
    return {"nkeys_seed_str": seed, "inbox_prefix": f"_INBOX_{keys.public_key(seed)}"}


def field_url(password: str | None = None) -> str:
    secret = password or field_password()
    return settings.NATS_URL.replace("nats://", f"nats://island:{secret}@", 1)


def field_password() -> str:
    return os.environ["SAIL_FIELD_PASSWORD"]


@dataclass
class World:
    x: Island  # paired, its own key: the attacker's Island
    x_seed: str
    y: Island  # paired, its own key: the victim
    y_seed: str
    job: Job  # user B's, running on Y
    f: Island  # a field Island (no key), for witnesses
    f_job: Job


@pytest.fixture
def world(stack) -> World:
    """Users A and B; Islands X (A's) and Y (B's) with keys; B's job running on Y; a
    field Island F of A's with a running job."""
    x_seed, y_seed = keys.new_seed(), keys.new_seed()
    a, b = UserFactory(), UserFactory()
    x = IslandFactory(owner=a, nkey=keys.public_key(x_seed))
    y = IslandFactory(owner=b, nkey=keys.public_key(y_seed))
    f = IslandFactory(owner=a, nkey=None)
    now = timezone.now()
    job = JobFactory(user=b, island=y, status="running", attempts=1, assigned_at=now)
    f_job = JobFactory(user=a, island=f, status="running", attempts=1, assigned_at=now)
    return World(x, x_seed, y, y_seed, job, f, f_job)


@pytest.fixture
def peers() -> Iterator[dict]:
    opened: dict[str, Peer] = {}
    yield opened
    for peer in opened.values():
        peer.close()


@pytest.fixture
def coordinator(peers) -> Peer:
    peers["coordinator"] = Peer(settings.NATS_URL, **credentials())
    return peers["coordinator"]


def connect(who: str, world: World, peers: dict) -> Peer:
    if who == "island":
        peer = Peer(settings.NATS_URL, **key_options(world.x_seed))
    elif who == "unpaired":
        peer = Peer(settings.NATS_URL, **key_options(keys.new_seed()))
    else:
        peer = Peer(field_url())
    peers[who] = peer
    return peer


ATTACKERS = ["island", "unpaired", "field"]


# --- who may connect


def test_nobody_connects_without_credentials_or_with_wrong_ones(stack):
    host = settings.NATS_URL.removeprefix("nats://")
    assert "Authorization Violation" in refused_to_connect(settings.NATS_URL)
    assert "Authorization Violation" in refused_to_connect(field_url("wrong-password"))
    assert "Authorization Violation" in refused_to_connect(f"nats://admin:admin@{host}")
    assert "Authorization Violation" in refused_to_connect(settings.NATS_URL, token="anything")


def test_every_identity_with_credentials_is_admitted(world, peers, coordinator):
    for who in ATTACKERS:
        assert connect(who, world, peers).nc.is_connected


# --- 1. read everything


SECRET_READS = [
    ">",
    "host.*.jobs",
    "host.{y}.jobs",
    "host.{y}.cancel",
    "jobs.*.events",
    "jobs.{job}.events",
    "_INBOX.>",
    "_INBOX_{ky}.>",
    "$SYS.REQ.USER.AUTH",
    "$JS.API.>",
]


@pytest.mark.parametrize("who", ["island", "unpaired"])
def test_an_island_or_a_key_cannot_read_what_is_not_its_own(who, world, peers, coordinator):
    attacker = connect(who, world, peers)
    names = {"y": world.y.pk, "job": world.job.pk, "ky": world.y.nkey}
    for pattern in SECRET_READS:
        subject = pattern.format(**names)
        inbox = attacker.subscribe(subject)
        assert attacker.refused("subscription", subject), subject
        coordinator.publish(subject.replace(">", "x").replace("*", "x"), {"secret": True})
        time.sleep(0.05)
        assert inbox.messages == [], subject


def test_the_field_user_hears_nothing_meant_for_islands_with_keys(world, peers, coordinator):
    field = connect("field", world, peers)
    jobs = field.subscribe("host.*.jobs")
    inboxes = field.subscribe("_INBOX.>")
    for subject in (
        ">",
        "jobs.*.events",
        f"jobs.{world.job.pk}.events",
        f"_INBOX_{world.y.nkey}.>",
    ):
        field.subscribe(subject)
        assert field.refused("subscription", subject), subject
    coordinator.publish(f"host.{world.y.pk}.jobs", {"input": "B's prompt"})
    coordinator.publish(f"_INBOX_{world.y.nkey}.reply", {"code": "SECRET"})
    coordinator.publish(f"jobs.{world.job.pk}.events", {"type": "token", "content": "B's"})
    # What is sent to a field Island reaches it: the same subscription works.
    coordinator.publish(f"field.host.{world.f.pk}.jobs", {"input": "F's"})
    eventually(lambda: jobs.subjects() == [f"host.{world.f.pk}.jobs"], timeout=WAIT)
    assert inboxes.messages == []


def test_nobody_but_the_coordinator_replays_the_client_events(world, peers, coordinator):
    for who in ["island", "unpaired"]:
        attacker = connect(who, world, peers)
        subject = "$JS.API.STREAM.MSG.GET.JOB_UPDATES"
        assert attacker.request(subject, {"seq": 1}) is None
        assert attacker.refused("publish", subject)
    # The field user's account has no JetStream at all.
    answer = connect("field", world, peers).request("$JS.API.STREAM.INFO.JOB_UPDATES", b"")
    assert answer is not None
    assert answer["error"]["code"] == 503


# --- 2. forge results, 3. inject into a user's stream


def witness_output(world: World, peer: Peer, text: str) -> None:
    """A field Island's output for its own job, and the wait until it is stored: what was
    published before it on the same stream was handled too."""
    peer.publish(
        f"host.{world.f.pk}.output", {"job_id": str(world.f_job.pk), "seq": 1, "chunk": text}
    )
    eventually(lambda: Job.objects.get(pk=world.f_job.pk).output == text, timeout=WAIT)


def forged_results(world: World) -> list[tuple[str, dict]]:
    job = str(world.job.pk)
    return [
        (f"host.{world.y.pk}.status", {"job_id": job, "state": "started"}),
        (f"host.{world.y.pk}.output", {"job_id": job, "seq": 1, "chunk": "injected"}),
        (f"host.{world.y.pk}.output", {"job_id": job, "seq": 2, "chunk": "", "is_final": True}),
        (f"host.{world.y.pk}.status", {"job_id": job, "state": "succeeded"}),
    ]


@pytest.mark.parametrize("who", ["island", "unpaired"])
def test_an_island_cannot_report_results_for_another_islands_job(who, world, peers, coordinator):
    attacker = connect(who, world, peers)
    for subject, payload in forged_results(world):
        attacker.publish(subject, payload)
        assert attacker.refused("publish", subject), subject
    witness_output(world, connect("field", world, peers), "witness")
    job = Job.objects.get(pk=world.job.pk)
    assert (job.status, job.output) == ("running", "")


def test_the_field_user_cannot_report_results_for_an_island_with_a_key(world, peers):
    field = connect("field", world, peers)
    for subject, payload in forged_results(world):
        field.publish(subject, payload)  # allowed to the field user: the bridge drops it
    witness_output(world, field, "witness")
    job = Job.objects.get(pk=world.job.pk)
    assert (job.status, job.output) == ("running", "")


@pytest.mark.parametrize("who", ATTACKERS)
def test_nobody_but_the_coordinator_publishes_client_events(who, world, peers, coordinator):
    attacker = connect(who, world, peers)
    subject = f"jobs.{world.job.pk}.events"
    inbox = coordinator.subscribe(subject)
    headers = {"Nats-Msg-Id": f"{world.job.pk}:1:t:1"}
    attacker.publish(subject, {"type": "token", "content": "attacker"}, headers=headers)
    assert attacker.refused("publish", subject)
    time.sleep(0.1)
    assert inbox.messages == []


# --- 4. hijack an unpaired Island, 5. answer in the coordinator's place


def test_a_host_id_belongs_to_the_first_key_that_asks_for_it(world, peers, coordinator):
    victim_seed = keys.new_seed()
    victim = Peer(settings.NATS_URL, **key_options(victim_seed))
    peers["victim"] = victim
    host_id = str(uuid.uuid4())
    victim_key = keys.public_key(victim_seed)
    reply = victim.request(f"coordinator.hosts.pairing.{victim_key}", {"host_id": host_id})
    assert reply is not None
    assert reply["success"] is True

    attacker = connect("unpaired", world, peers)
    answer = attacker.request(f"coordinator.hosts.pairing.{attacker.key}", {"host_id": host_id})
    assert answer == {"success": False, "error": "this host_id belongs to another key"}
    # Nor may it ask in the victim's name, or read the victim's answers.
    assert attacker.request(f"coordinator.hosts.pairing.{victim_key}", {"host_id": host_id}) is None
    assert attacker.refused("publish", f"coordinator.hosts.pairing.{victim_key}")
    field = connect("field", world, peers)
    answer = field.request("coordinator.hosts.pairing", {"host_id": host_id})
    assert answer == {"success": False, "error": "this host_id belongs to another key"}


def test_a_paired_island_cannot_ask_for_another_islands_code(world, peers):
    attacker = connect("island", world, peers)
    subject = f"coordinator.hosts.pairing.{world.x.nkey}"
    answer = attacker.request(subject, {"host_id": str(world.y.pk)})
    assert answer == {"success": False, "error": "this host_id belongs to another key"}


@pytest.mark.parametrize("who", ATTACKERS)
def test_nobody_answers_pairing_requests_in_the_coordinators_place(who, world, peers):
    attacker = connect(who, world, peers)
    for subject in ("coordinator.hosts.pairing", "coordinator.hosts.pairing.*",
                    "coordinator.hosts.pairing.>"):  # fmt: skip
        attacker.subscribe(subject)
        assert attacker.refused("subscription", subject), subject
    # The coordinator still answers a fresh Island.
    fresh = connect("unpaired", world, peers) if who != "unpaired" else attacker
    reply = fresh.request(f"coordinator.hosts.pairing.{fresh.key}", {"host_id": str(uuid.uuid4())})
    assert reply is not None
    assert reply["success"] is True
    assert reply["pair_url"].endswith("/pair")


# --- 6. impersonate an Island


def test_an_island_cannot_speak_for_another(world, peers, coordinator):
    attacker = connect("island", world, peers)
    for kind in ("register", "heartbeat", "lease", "image", "progress"):
        subject = f"host.{world.y.pk}.{kind}"
        attacker.publish(subject, {"host_id": str(world.y.pk), "status": "offline"})
        assert attacker.refused("publish", subject), subject


def test_the_field_user_cannot_speak_for_an_island_with_a_key(world, peers):
    field = connect("field", world, peers)
    before = Island.objects.get(pk=world.y.pk)
    y = str(world.y.pk)
    field.publish("coordinator.hosts.register", {"host_id": y, "capabilities": {"cpu_cores": 1}})
    field.publish(f"host.{y}.heartbeat", {"host_id": y, "status": "offline", "active_jobs": 0,
                                           "asking_prices": {"_default": "0.000001"}})  # fmt: skip
    f = str(world.f.pk)
    field.publish(f"host.{f}.heartbeat", {"host_id": f, "status": "online", "active_jobs": 3})
    eventually(lambda: Island.objects.get(pk=f).active_jobs == 3, timeout=WAIT)
    after = Island.objects.get(pk=y)
    assert after.capabilities == before.capabilities
    assert after.status == "online"
    assert after.asking_prices == before.asking_prices


# --- 7. forge assignments, 8. administer JetStream


@pytest.mark.parametrize("who", ATTACKERS)
def test_nobody_but_the_coordinator_assigns_jobs(who, world, peers):
    attacker = connect(who, world, peers)
    for subject in (f"host.{world.y.pk}.jobs", f"host.{world.x.pk}.jobs"):
        attacker.publish(subject, {"job_id": str(uuid.uuid4()), "runtime_type": "wasm",
                                   "wasm_url": "http://192.168.1.1/probe"})  # fmt: skip
        assert attacker.refused("publish", subject), subject


@pytest.mark.parametrize("who", ["island", "unpaired"])
def test_nobody_but_the_coordinator_administers_jetstream(who, world, peers, coordinator):
    attacker = connect(who, world, peers)
    for subject in (
        "$JS.API.STREAM.LIST",
        "$JS.API.STREAM.NAMES",
        "$JS.API.STREAM.PURGE.JOB_UPDATES",
        f"$JS.API.CONSUMER.DELETE.JOBS.host-{world.y.pk}",
        f"$JS.API.CONSUMER.MSG.NEXT.JOBS.host-{world.y.pk}",
        "$JS.API.STREAM.DELETE.JOBS",
    ):
        assert attacker.request(subject, b"{}") is None, subject
        assert attacker.refused("publish", subject), subject
    streams = coordinator.request("$JS.API.STREAM.NAMES", b"{}")
    assert streams is not None
    assert {"JOBS", "JOB_UPDATES", "ISLANDS", "JOB_EVENTS"} <= set(streams["streams"])


# --- what Islands may do


def test_a_paired_island_reports_and_reads_its_own_jobs(world, peers, coordinator):
    island = connect("island", world, peers)
    x = str(world.x.pk)
    heartbeats = coordinator.subscribe(f"host.{x}.heartbeat")
    island.publish(f"host.{x}.heartbeat", {"host_id": x, "status": "online", "active_jobs": 0})
    eventually(lambda: heartbeats.messages, timeout=WAIT)

    async def fetch_own_job() -> bytes:
        js = coordinator.nc.jetstream()
        await js.publish(f"host.{x}.jobs", b'{"job_id": "mine"}')
        sub = await island.nc.jetstream().pull_subscribe_bind(durable=f"host-{x}", stream="JOBS")
        msgs = await sub.fetch(1, timeout=5)
        await msgs[0].ack()
        return msgs[0].data

    assert island.run(fetch_own_job()) == b'{"job_id": "mine"}'
    assert not [e for e in island.errors if "violation" in e]


# --- revocation


def test_unpairing_cuts_the_island_off_within_five_seconds(world, peers):
    island = Peer(settings.NATS_URL, allow_reconnect=True, **key_options(world.x_seed))
    peers["island"] = island
    x = str(world.x.pk)
    island.publish(f"host.{x}.heartbeat", {"host_id": x})
    assert not island.refused("publish", f"host.{x}.heartbeat", within=0.3)

    started = time.monotonic()
    pairing.unpair_island(island=Island.objects.get(pk=x))
    eventually(lambda: island.disconnections, timeout=5)
    assert time.monotonic() - started < 5
    eventually(lambda: island.nc.is_connected, timeout=WAIT)
    island.publish(f"host.{x}.heartbeat", {"host_id": x})
    assert island.refused("publish", f"host.{x}.heartbeat")


def test_a_pairing_reconnects_the_key_with_its_islands_permissions(stack, peers, coordinator):
    seed = keys.new_seed()
    key = keys.public_key(seed)
    island = Peer(settings.NATS_URL, allow_reconnect=True, **key_options(seed))
    peers["island"] = island
    host_id = str(uuid.uuid4())
    reply = island.request(f"coordinator.hosts.pairing.{key}", {"host_id": host_id})
    assert reply is not None
    island.publish(f"host.{host_id}.heartbeat", {"host_id": host_id})
    assert island.refused("publish", f"host.{host_id}.heartbeat")  # not yet paired

    pairing.confirm_pairing(code=reply["code"], user=UserFactory(), ip="127.0.0.1")
    eventually(lambda: island.disconnections, timeout=5)
    eventually(lambda: island.nc.is_connected, timeout=WAIT)
    beats = coordinator.subscribe(f"host.{host_id}.heartbeat")
    island.publish(f"host.{host_id}.heartbeat", {"host_id": host_id})
    eventually(lambda: beats.messages, timeout=WAIT)
    answer = island.request(f"coordinator.hosts.pairing.{key}", {"host_id": host_id})
    assert answer is not None
    assert answer["error"] == "already paired"


# --- limits


def test_pairing_requests_are_limited_per_key(stack, peers):
    limit = settings.SAIL_PAIRING_REQUESTS_PER_MINUTE
    peer = Peer(settings.NATS_URL, **key_options(keys.new_seed()))
    peers["key"] = peer
    subject, request = f"coordinator.hosts.pairing.{peer.key}", {"host_id": str(uuid.uuid4())}
    replies = [peer.request(subject, request) for _ in range(limit + 1)]
    codes = {reply["code"] for reply in replies[:limit] if reply and reply["success"]}
    assert len(codes) == 1  # asking again brings the same live code
    assert replies[limit] == {
        "success": False,
        "error": "too many pairing requests: try again in a minute",
    }


def test_islands_that_a_key_asked_for_and_nobody_paired_are_forgotten(db):
    key = keys.public_key(keys.new_seed())
    host_id = uuid.uuid4()
    pairing.request_pairing_code(str(host_id), key=key)
    paired = IslandFactory()
    assert pairing.forget_unpaired_keys() == 0  # its code still lives
    long_ago = timezone.now() - pairing.UNPAIRED_KEY_TTL * 2
    Island.objects.filter(pk=host_id).update(registered_at=long_ago)
    PairingCode.objects.update(expires_at=long_ago)
    assert pairing.forget_unpaired_keys() == 1
    assert not Island.objects.filter(pk=host_id).exists()
    assert Island.objects.filter(pk=paired.pk).exists()


def test_the_field_users_password_is_stored_hashed_in_the_server_configuration():
    text = (Path(settings.STATE_DIR) / "nats.conf").read_text()
    assert field_password() not in text
    assert '"password": "$2' in text
    assert orjson.loads(text)["authorization"]["auth_callout"]["allowed_accounts"] == ["APP"]


# --- mobile Islands, and jobs only for paired Islands


def test_a_mobile_claim_gives_the_phone_its_own_credentials_and_a_public_url(stack, peers):
    user = UserFactory()
    _, code = pairing_mobile.start_mobile_session(user=user)
    body = {"code": code, "device_name": "Pixel 8", "platform": "android"}
    with stack.client() as client:
        answer = client.post("/pairing/mobile/claim", json=body)
    assert answer.status_code == 201, answer.text
    data = answer.json()["data"]
    assert data["nats_url"] == settings.NATS_PUBLIC_URL
    assert "@" not in data["nats_url"]
    island = Island.objects.get(pk=data["host_id"])
    assert island.nkey == data["nats_key"] == keys.public_key(data["nats_seed"])  # only its half

    phone = Peer(settings.NATS_URL, **key_options(data["nats_seed"]))
    peers["phone"] = phone
    host = data["host_id"]
    phone.publish(f"host.{host}.heartbeat", {"host_id": host, "status": "online"})
    eventually(lambda: Island.objects.get(pk=host).last_heartbeat_at, timeout=WAIT)
    other = f"host.{uuid.uuid4()}.heartbeat"
    phone.publish(other, {})
    assert phone.refused("publish", other)  # anyone else's: refused


def test_a_phone_may_claim_with_a_key_of_its_own(stack):
    user = UserFactory()
    _, code = pairing_mobile.start_mobile_session(user=user)
    seed = keys.new_seed()
    body = {"code": code, "device_name": "iPhone", "platform": "ios", "nkey": keys.public_key(seed)}
    with stack.client() as client:
        answer = client.post("/pairing/mobile/claim", json=body)
        data = answer.json()["data"]
        assert "nats_seed" not in data
        assert data["nats_key"] == keys.public_key(seed)
        # The same key again: it belongs to that Island now.
        _, again = pairing_mobile.start_mobile_session(user=user)
        taken = client.post("/pairing/mobile/claim", json={**body, "code": again})
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "key_in_use"


def test_an_island_nobody_paired_never_gets_a_job(stack):
    unpaired = IslandFactory(owner=None, paired_at=None)
    user = accounts.sign_up(email="b@example.com", password="correct horse battery")
    api_key = accounts.create_api_key(user=user, name="t")[1]
    seed_cargos()
    with stack.client(api_key) as client:
        answer = client.post("/jobs", json={"workload": "llm-chat", "input": {"prompt": "hi"}})
    assert answer.status_code in (200, 201), answer.text
    job = Job.objects.get(pk=answer.json()["data"]["id"])
    assert job.status == "queued"
    assert job.island_id is None
    assert Island.objects.get(pk=unpaired.pk).active_jobs == 0
