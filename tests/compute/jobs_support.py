"""Shared pieces of the job tests: Islands, NATS readers (real JetStream), a job on an
Island, the end of a waiting job's wait."""

import threading
import time
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from nats.js.api import ConsumerConfig, DeliverPolicy

from compute.models import Island, Job
from compute.seed import seed_cargos
from compute.services import placement
from compute.services.publish import ensure_streams, job_events_subject
from core import tx
from sail.client import sail
from sail.streams import JOB_UPDATES_STREAM
from tests.factories import CargoFactory, IslandFactory, UserFactory


@pytest.fixture(autouse=True)
def _fresh_index(settings):
    """Each test builds its own placement index from the test database, in its thread."""
    settings.PLACEMENT_REFRESH_IN_BACKGROUND = False
    placement.reset_index()
    yield
    placement.reset_index()


@pytest.fixture
def streams() -> None:
    """JOBS and JOB_UPDATES exist on the test NATS server."""
    ensure_streams(force=True)


@pytest.fixture
async def closed_pool():
    """Close the pool and the ORM's connection of asgiref's thread after the test."""
    yield
    await tx.close_pool()
    await sync_to_async(connections.close_all)()


@pytest.fixture
def chat(db):
    """A container chat Cargo without memory needs, priced 0.01."""
    return CargoFactory(slug="chat-test", runtime_type="container", price_per_job=Decimal("0.01"))


def island(**fields) -> Island:
    fields.setdefault("owner", UserFactory())
    return IslandFactory(**fields)


def assignments(host_id, n: int = 1, timeout: float = 2.0) -> list[dict]:
    """Read (and ack) up to ``n`` assignments as a field Island does: durable ``host-{id}``."""

    async def go(nc):
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            f"host.{host_id}.jobs", durable=f"host-{host_id}", stream="JOBS"
        )
        try:
            msgs = await sub.fetch(n, timeout=timeout)
        except TimeoutError:
            return []
        for msg in msgs:
            await msg.ack()
        return [orjson.loads(m.data) for m in msgs]

    return sail.call(go, timeout=timeout + 3)


def job_events(job_id, timeout: float = 0.5) -> list[dict]:
    """Every event published so far on ``jobs.{id}.events``, in stream order."""

    async def go(nc):
        js = nc.jetstream()
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        sub = await js.pull_subscribe(
            job_events_subject(job_id), stream=JOB_UPDATES_STREAM, config=config
        )
        events = []
        while True:
            try:
                msgs = await sub.fetch(100, timeout=timeout)
            except TimeoutError:
                break
            events += [orjson.loads(m.data) for m in msgs]
            for m in msgs:
                await m.ack()
        await sub.unsubscribe()
        return events

    return sail.call(go, timeout=timeout + 10)


class Inbox:
    """A core NATS subscription whose messages a test reads later."""

    def __init__(self, subject: str):
        self.sub = sail.call(lambda nc: nc.subscribe(subject))

    def messages(self, timeout: float = 0.5) -> list[dict]:
        async def go(nc):
            out = []
            while True:
                try:
                    msg = await self.sub.next_msg(timeout=timeout)
                except TimeoutError:
                    return out
                out.append(orjson.loads(msg.data))

        return sail.call(go, timeout=timeout + 5)


def running_job(cargo, host: Island, **fields) -> Job:
    """A job assigned to ``host`` (first attempt)."""
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    defaults = {"user": UserFactory(credits=100), "lease_expires_at": now + timedelta(seconds=60),
                "attempts": 1, "assigned_at": now, "input": {"prompt": "Hi"},
                "budget": cargo.price_per_job}  # fmt: skip
    return Job.objects.create(cargo=cargo, island=host, status="running", **{**defaults, **fields})


def give_up_once_streamed(*, streamed: bool = True) -> threading.Thread:
    """In the background: once the next job waits (and, if ``streamed``, a stream of its
    account is open, which has read the job's row), end its wait as the sweep does once
    its limit passed. Join it before reading the job: its events go out before its
    commit."""
    from django.utils import timezone

    from compute.services import waiting
    from compute.streaming import slots
    from core.redis import redis_client

    def run() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            job = Job.objects.filter(status="queued").first()
            if job and (not streamed or redis_client().zcard(slots.key(job.user_id))):
                waiting.expire_waiting(now=timezone.now() + timedelta(days=2))
                return
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


__all__ = ["seed_cargos"]
