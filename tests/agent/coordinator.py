"""The test's coordinator: its side of the protocol on a nats-py connection with the
coordinator's identity, and the real auth callout (pairing.callout) with an ``admit`` of the
test's (:class:`Admissions`: which keys are paired with which Island)."""

import asyncio
import contextlib
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from pairing.callout import run_callout
from pairing.identities import UNPAIRED_CREDENTIAL_SECONDS, Grant, cut_off
from sail import keys, permissions, streams, subjects

WAIT = 10.0
ACCOUNT_ID = "42"
PAIRED_AT = "2026-03-14T09:00:00+00:00"


class Admissions:
    """The coordinator's answer to "who is this key?" (the callout's ``admit``): the keys
    of paired Islands and their host_id; any other key may only ask for a code."""

    def __init__(self) -> None:
        self.paired: dict[str, str] = {}
        self.ttl_seconds = 3600  # how long a paired Island's admission lasts
        self.admitted: Counter[str] = Counter()  # admissions per key

    def __call__(self, *, key: str, ip: str) -> Grant:
        self.admitted[key] += 1
        host_id = self.paired.get(key)
        if host_id is None:
            publish, subscribe = permissions.unpaired(key)
            return Grant(f"unpaired:{key[:16]}", publish, subscribe, UNPAIRED_CREDENTIAL_SECONDS)
        publish, subscribe = permissions.island(host_id, key)
        return Grant(f"island:{host_id}", publish, subscribe, self.ttl_seconds, host_id)

    def hosts(self) -> set[str]:
        return set(self.paired.values())


async def admitting(nats_url: str, callout: asyncio.Task) -> None:
    """Wait until the callout admits a key (it says nothing when it is ready). A probe
    sent before it listens waits for the server's callout timeout: give up on each
    sooner and try again."""
    seed = keys.new_seed()

    async def quiet(exc: Exception) -> None:
        pass

    deadline = asyncio.get_running_loop().time() + WAIT
    while asyncio.get_running_loop().time() < deadline:
        if callout.done():
            callout.result()  # its error, if it failed
        try:
            probe = await nats.connect(
                nats_url,
                nkeys_seed_str=seed,
                allow_reconnect=False,
                connect_timeout=0.25,  # type: ignore[arg-type]  # a float works
                error_cb=quiet,
            )
        except Exception:
            await asyncio.sleep(0.05)
            continue
        await probe.close()
        return
    raise RuntimeError("the auth callout does not admit keys")


@contextlib.asynccontextmanager
async def running_callout(
    nats_url: str, js: JetStreamContext, admit: Admissions
) -> AsyncIterator[None]:
    """The real auth callout on this event loop, until the block ends."""
    stopping = asyncio.Event()
    callout = asyncio.create_task(run_callout(nats_url, stopping, js, admit=admit))
    try:
        await admitting(nats_url, callout)
        yield
    finally:
        stopping.set()
        await asyncio.wait_for(callout, WAIT)


class Coordinator:
    """The coordinator's side of the protocol, recording what Islands publish: on their
    own subjects (``host.{id}.*``) and, for field Islands, under ``field.``. Messages are
    kept per kind (``register``, ``heartbeat``, ``status``…) with ``_subject``,
    ``_host_id`` (from the subject), ``_field`` and ``_n`` (order of arrival)."""

    def __init__(self, nc: Client, admissions: Admissions):
        self.nc = nc
        self.js = nc.jetstream()
        self.admissions = admissions
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._changed = asyncio.Condition()
        self.pairing_replies: list[dict[str, Any]] = [
            {
                "success": True,
                "code": "A3X9K2",
                "expires_in_seconds": 600,
                "pair_url": "http://portal.test/pair",
            }
        ]
        self.pairing_requests: list[dict[str, Any]] = []
        self._codes_given = 0
        self.received = 0

    async def start(self) -> None:
        for subject in (subjects.host("*", "*"), subjects.FIELD + ">"):
            await self.nc.subscribe(subject, cb=self._record)
        for subject in (subjects.pairing("*"), subjects.FIELD + subjects.PAIRING):
            await self.nc.subscribe(subject, cb=self._pairing)
        for subject in (subjects.host("*", "ping"), subjects.FIELD + subjects.host("*", "ping")):
            await self.nc.subscribe(subject, cb=self._ping)
        await self.nc.flush()

    async def _record(self, msg: Any) -> None:
        host_id, kind, field = subjects.kind_of(msg.subject)
        if kind in ("ping", subjects.PAIRING):
            return
        try:
            payload = json.loads(msg.data)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        payload |= {"_subject": msg.subject, "_host_id": host_id, "_field": field}
        async with self._changed:
            self.received += 1
            payload["_n"] = self.received
            self.messages[kind].append(payload)
            self._changed.notify_all()

    async def _pairing(self, msg: Any) -> None:
        """A key's request (``coordinator.hosts.pairing.{key}``): "already paired" for
        the key of a paired Island, as the coordinator says it; otherwise, and for field
        Islands, the next of ``pairing_replies``."""
        request = json.loads(msg.data)
        self.pairing_requests.append({**request, "_subject": msg.subject})
        key = msg.subject.removeprefix(subjects.PAIRING + ".")
        if key in self.admissions.paired:
            reply = {
                "success": False,
                "error": "already paired",
                "account_id": ACCOUNT_ID,
                "paired_at": PAIRED_AT,
            }
        else:
            reply = self.pairing_replies[min(self._codes_given, len(self.pairing_replies) - 1)]
            self._codes_given += 1
        await msg.respond(json.dumps(reply).encode())

    async def _ping(self, msg: Any) -> None:
        await msg.respond(b"{}")

    def of(
        self, kind: str, host_id: str | None = None, job_id: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages[kind]
            if (host_id is None or m.get("host_id", m["_host_id"]) == host_id)
            and (job_id is None or m.get("job_id") == job_id)
        ]

    def about(self, host_id: str) -> list[dict[str, Any]]:
        """Every message recorded on a subject of ``host_id``, or naming it."""
        return sorted(
            (
                m
                for kind in self.messages
                for m in self.messages[kind]
                if host_id in (m["_host_id"], m.get("host_id"))
            ),
            key=lambda m: m["_n"],
        )

    async def wait_for(
        self,
        kind: str,
        predicate=lambda m: True,
        *,
        count: int = 1,
        within: float = WAIT,
        **filters: Any,
    ) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
        """The first ``count`` messages of ``kind`` that match, waiting for them."""

        def matching() -> list[dict[str, Any]]:
            return [m for m in self.of(kind, **filters) if predicate(m)]

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(matching()) >= count), within)
        return matching()[:count]

    async def succeeded(self, job_id: str, *, within: float = WAIT) -> dict[str, Any]:
        """The job's ``succeeded`` status, waiting for it."""
        [done] = await self.wait_for(
            "status", lambda m: m["state"] == "succeeded", job_id=job_id, within=within
        )
        return done

    async def states(self, job_id: str) -> list[str]:
        return [m["state"] for m in self.of("status", job_id=job_id)]

    async def assign(self, host_id: str, job: dict[str, Any], *, field: bool = False) -> None:
        """As the coordinator assigns: through JetStream to an Island with a key, on core
        NATS (``field.host.{id}.jobs``) to a field Island, whose account has none."""
        body = json.dumps(job).encode()
        if field:
            await self.send_raw(subjects.to_island(host_id, "jobs", field=True), body)
        else:
            await self.js.publish(subjects.host(host_id, "jobs"), body, stream="JOBS")

    async def send(
        self, host_id: str, kind: str, payload: dict[str, Any], *, field: bool = False
    ) -> None:
        subject = subjects.to_island(host_id, kind, field=field)
        await self.send_raw(subject, json.dumps(payload).encode())

    async def send_raw(self, subject: str, body: bytes) -> None:
        await self.nc.publish(subject, body)
        await self.nc.flush()


def job(runtime_type: str = "container", **fields: Any) -> dict[str, Any]:
    """A job assignment of the protocol."""
    return {
        "job_id": str(uuid.uuid4()),
        "workload_id": "llm-chat",
        "input": {"messages": [{"role": "user", "content": "hello island"}], "max_tokens": 64},
        "lease_expires": 0,
        "runtime_type": runtime_type,
        **fields,
    }


def fields_of(message: dict[str, Any]) -> dict[str, Any]:
    """A recorded message without the recorder's notes (``_subject``…)."""
    return {k: v for k, v in message.items() if not k.startswith("_")}


async def ensure_jobs_stream(js: JetStreamContext) -> bool:
    """The JOBS stream as the coordinator makes it; whether it was missing."""
    try:
        await js.stream_info(subjects.JOBS_STREAM)
    except nats.js.errors.NotFoundError:
        await js.add_stream(streams.JOBS)
        return True
    return False


async def forget_islands(js: JetStreamContext, host_ids: set[str]) -> None:
    """Remove the jobs consumers and the assignments left for these Islands."""
    for host_id in host_ids:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(subjects.JOBS_STREAM, f"host-{host_id}")
        await js.purge_stream(subjects.JOBS_STREAM, subject=subjects.host(host_id, "jobs"))


async def kick(key: str) -> None:
    """Disconnect the connections admitted with ``key``, as unpairing or pairing does
    (pairing.identities.cut_off, through the system account); they reconnect at once."""
    assert await asyncio.to_thread(cut_off, key) >= 1
