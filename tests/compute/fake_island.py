"""An Island played by the tests (and the benchmarks) with nats-py, speaking
island-protocol.md: it reads its durable consumer ``host-{id}`` on ``JOBS`` (one pull
request kept open, each assignment taken the moment it arrives), acks, and
answers each assignment with ``started``, output chunks (seq from 1), the final empty
chunk and ``succeeded`` with usage, or ``failed``. It heartbeats every second so that
the coordinator dispatches queued jobs to it. It records, per job, when the assignment
arrived and when its first output left, so that callers can subtract the Island's own
time from a client's time to first token.
"""

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import nats
import orjson
from django.conf import settings
from nats.aio.msg import Msg

from sail.client import credentials
from sail.pull import Puller

Reply = Callable[[dict], list[str]]


def echo_reply(job_input: dict) -> list[str]:
    """``You said:`` and the words of the prompt, cut at ``max_tokens``."""
    words = ["You", " said:", *(f" {w}" for w in str(job_input.get("prompt", "")).split())]
    return words[: job_input.get("max_tokens") or len(words)]


@dataclass
class Timing:
    received: float
    first_output: float | None = None


@dataclass
class FakeIsland:
    host_id: str
    reply: Reply = echo_reply
    token_delay: float = 0.0
    fail_with: str | None = None  # answer ``failed`` with this error instead
    hold: bool = False  # stream tokens, then wait for ``release()`` before finishing
    timings: dict[str, Timing] = field(default_factory=dict)
    assignments: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    # --- control from the test's thread ---
    def start(self) -> "FakeIsland":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake Island did not connect")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def release(self) -> None:
        """Let held jobs finish."""
        assert self._loop is not None
        assert self._release is not None
        self._loop.call_soon_threadsafe(self._release.set)

    # --- the Island ---
    def _subject(self, kind: str) -> str:
        return f"host.{self.host_id}.{kind}"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._release = asyncio.Event()
        self._stop = asyncio.Event()
        # The coordinator's credentials: this plays the protocol, not the permissions
        # (tests/sail/test_security.py holds those).
        self.nc = await nats.connect(
            settings.NATS_URL, name=f"island-{self.host_id[:8]}", **credentials()
        )
        js = self.nc.jetstream()
        durable = f"host-{self.host_id}"
        await js.pull_subscribe(self._subject("jobs"), durable=durable, stream="JOBS")
        # nats-py's fetch(n) keeps waiting for n messages until its timeout once the first
        # came: that wait would count as the coordinator's in a time-to-first-token.
        puller = _TimedPuller(self.nc, "JOBS", durable, batch=100, wait=0.0)
        await puller.start()
        await self._heartbeat()
        self._ready.set()
        beat = asyncio.create_task(self._beat())
        running: set[asyncio.Task] = set()
        try:
            while not self._stop.is_set():
                for msg in await puller.collect(self._stop):
                    received = puller.arrived.pop(id(msg), time.perf_counter())
                    await msg.ack()
                    task = asyncio.create_task(self._run(orjson.loads(msg.data), received))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            beat.cancel()
            for task in running:
                task.cancel()
            with contextlib.suppress(Exception):  # an Island that is gone for good
                await js.delete_consumer("JOBS", durable)
            with contextlib.suppress(Exception):
                await self.nc.drain()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(1)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        beat = {
            "host_id": self.host_id,
            "status": "online",
            "active_jobs": 0,
            "timestamp": int(time.time() * 1000),
            "agent_version": "fake-0",
            "performance_estimates": {
                "supported_runtimes": ["container", "llmcpp", "wasm"],
                "max_concurrent_containers": 1000,
            },
        }
        await self._send("heartbeat", beat)

    async def _send(self, kind: str, payload: dict) -> None:
        await self.nc.publish(self._subject(kind), orjson.dumps(payload))

    async def _run(self, assignment: dict, received: float) -> None:
        job_id = assignment["job_id"]
        self.assignments.append(assignment)
        self.timings[job_id] = timing = Timing(received)
        now = lambda: int(time.time() * 1000)  # noqa: E731
        await self._send("status", {"job_id": job_id, "state": "started", "timestamp": now()})
        tokens = self.reply(assignment.get("input") or {})
        for seq, token in enumerate(tokens, start=1):
            await self._send("output", {"job_id": job_id, "seq": seq, "chunk": token})
            if timing.first_output is None:
                await self.nc.flush()
                timing.first_output = time.perf_counter()
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
        if self.hold:
            await self.nc.flush()
            assert self._release is not None
            await self._release.wait()
        if self.fail_with:
            state = {"state": "failed", "error": self.fail_with}
        else:
            final = {"job_id": job_id, "seq": len(tokens) + 1, "chunk": "", "is_final": True}
            await self._send("output", final)
            prompt = str((assignment.get("input") or {}).get("prompt", ""))
            usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(tokens)}
            state = {"state": "succeeded", "usage": usage}
        await self._send("status", {"job_id": job_id, "timestamp": now(), **state})
        await self.nc.flush()


class _TimedPuller(Puller):
    """Notes when each message arrived, before anything else runs."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.arrived: dict[int, float] = {}

    async def _on_msg(self, msg: Msg) -> None:
        self.arrived[id(msg)] = time.perf_counter()
        await super()._on_msg(msg)


def new_host_id() -> str:
    return str(uuid.uuid4())


__all__ = ["FakeIsland", "Timing", "echo_reply", "new_host_id"]
