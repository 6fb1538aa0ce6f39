"""One Island on a NATS connection: registration, pairing, heartbeats and its jobs.

Several Islands can share a connection (``--simulate``); the machine's metrics and the
RTT measurement are then shared too, so that thousands of simulated Islands stay light.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from . import AGENT_VERSION, recommendations, system
from . import state as state_file
from .config import AgentConfig, ConfigError
from .connection import backoff_delay
from .identity import Identity
from .jobs import JobRunner
from .runtimes import Runtime
from .state import State
from .wire import decode, encode, host_subject, now_ms, publish

logger = logging.getLogger(__name__)

PING_TIMEOUT = 5.0
PAIRING_TIMEOUT = 10.0


class Machine:
    """This computer's capabilities and load, sampled at most once per ``max_age`` s."""

    def __init__(self, *, region: str | None, disk_path: Path, max_age: float = 1.0):
        self.region = region
        self.disk_path = disk_path
        self.max_age = max_age
        self._capabilities: dict[str, Any] | None = None
        self._sample: tuple[float, dict[str, Any], list[dict[str, Any]]] | None = None
        self._lock = asyncio.Lock()
        system.prime_cpu_percent()

    async def capabilities(self) -> dict[str, Any]:
        if self._capabilities is None:
            self._capabilities = await asyncio.to_thread(system.capabilities, self.region)
        return self._capabilities

    async def sample(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with self._lock:
            if self._sample is None or time.monotonic() - self._sample[0] > self.max_age:
                gpus = await asyncio.to_thread(system.gpu_metrics)
                self._sample = (time.monotonic(), system.system_metrics(self.disk_path), gpus)
            return self._sample[1], self._sample[2]


class RttMeter:
    """The round trip of a request on ``host.{id}.ping``; the latest value is reported."""

    def __init__(self, nc: Client, host_id: str):
        self.nc = nc
        self.host_id = host_id
        self.latest_ms: float | None = None
        self._task: asyncio.Task | None = None

    def measure_soon(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._measure())

    async def _measure(self) -> None:
        payload = {"host_id": self.host_id, "timestamp": now_ms()}
        start = time.perf_counter()
        try:
            await self.nc.request(
                host_subject(self.host_id, "ping"), encode(payload), timeout=PING_TIMEOUT
            )
        except (nats.errors.Error, TimeoutError) as exc:
            logger.debug("ping: %s", exc)
            return
        self.latest_ms = round((time.perf_counter() - start) * 1000, 2)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class Island:
    def __init__(
        self,
        *,
        nc: Client,
        config: AgentConfig,
        state: State,
        identity: Identity,
        runtimes: dict[str, Runtime],
        machine: Machine,
        rtt: RttMeter,
        say: Callable[[str], None],
        interactive: bool = True,
        first_heartbeat_delay: float = 0.0,
    ):
        self.nc = nc
        self.config = config
        self.state = state
        self.identity = identity
        self.machine = machine
        self.rtt = rtt
        self.say = say
        self.interactive = interactive
        self.first_heartbeat_delay = first_heartbeat_delay
        self.jobs = JobRunner(
            nc=nc,
            host_id=state.host_id,
            config=config,
            runtimes=runtimes,
            use_jetstream=interactive,
            bind=identity.keyed,
        )
        self.ready = False  # registered, heartbeating, taking jobs
        self._showed_code = False
        self._tasks: list[asyncio.Task] = []
        self._pairing: asyncio.Task | None = None
        self._subs: list[Any] = []

    @property
    def host_id(self) -> str:
        return self.state.host_id

    def subject(self, kind: str) -> str:
        return host_subject(self.host_id, kind)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """A field Island registers and works at once, and asks for a code while it is
        not paired. One with its own key may do nothing before it is paired: it asks
        first, and gets ready when the coordinator answers that it is paired."""
        if self.identity.keyed:
            self._pairing = asyncio.create_task(self._pair(first=await self._ask()))
            return
        await self._get_ready()
        if self.interactive and not self.state.paired:
            self._pairing = asyncio.create_task(self._pair())

    async def _get_ready(self) -> None:
        if self.ready:
            return
        self.ready = True
        if self.interactive:
            self._subs.append(await self.nc.subscribe(self.subject("paired"), cb=self._on_paired))
            self._subs.append(await self.nc.subscribe(self.subject("unpaired"), cb=self._unpaired))
        # The coordinator lost this Island's registration (an outage, a reset): again.
        self._subs.append(await self.nc.subscribe(self.subject("reregister"), cb=self._again))
        await self.jobs.start()
        await self.register()
        self._tasks.append(asyncio.create_task(self._heartbeats()))
        if self.interactive and self.config.api_url:
            poll = recommendations.poll(
                api_url=self.config.api_url,
                host_id=self.host_id,
                interval=self.config.recommendations_interval,
                say=self.say,
            )
            self._tasks.append(asyncio.create_task(poll))

    async def _stand_down(self) -> None:
        """No longer paired (an Island with a key): stop working until paired again."""
        if not self.ready:
            return
        self.ready = False
        await self.jobs.stop_intake()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    async def stop(self, *, grace: float, force: asyncio.Event | None = None) -> None:
        """Graceful stop: no new jobs, wait for running ones, then the offline heartbeat."""
        await self.jobs.stop_intake()
        if self._pairing is not None:
            self._pairing.cancel()
        stopped = await self.jobs.wait(grace, force)  # heartbeats go on meanwhile
        for task in self._tasks:
            task.cancel()
        self.rtt.cancel()
        if stopped and self.interactive:
            self.say(f"Stopped {stopped} job(s) that did not finish in {grace:g}s")
        if self.ready:
            await publish(
                self.nc, self.subject("heartbeat"), await self.heartbeat(status="offline")
            )
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def reconnected(self) -> None:
        if self.identity.keyed:
            # The connection may have been ended because the Island was paired or
            # unpaired: what it may do now is the coordinator's answer.
            if self._pairing is not None:
                self._pairing.cancel()
            was_ready = self.ready
            self._pairing = asyncio.create_task(self._pair(first=await self._ask()))
            if not (was_ready and self.ready):
                return  # unpaired, or just made ready (registered, intake new) by the answer
        await self.register()
        await self.jobs.restart_intake()

    # -- registration and heartbeats --------------------------------------------------

    async def register(self) -> None:
        payload = {"host_id": self.host_id, **await self._description()}
        await publish(self.nc, self.identity.register_subject(self.host_id), payload)

    async def _description(self) -> dict[str, Any]:
        return {
            "capabilities": await self.machine.capabilities(),
            "version": AGENT_VERSION,
            "name": self.config.name,  # extension: the name shown when pairing
        }

    async def _again(self, msg: Msg) -> None:
        logger.info("the coordinator asked for a new registration")
        await self.register()

    async def heartbeat(self, *, status: str = "online") -> dict[str, Any]:
        system_metrics, gpus = await self.machine.sample()
        beat: dict[str, Any] = {
            "host_id": self.host_id,
            "status": status,
            "active_jobs": len(self.jobs.running),
            "timestamp": now_ms(),
            "agent_version": AGENT_VERSION,
            "system": system_metrics,
            "active_job_metrics": self.jobs.active_job_metrics(),
            "cache": {
                "cached_image_count": 0,
                "cached_size_mb": 0,
                "warm_workload_count": len(self.jobs.warm),
                "warm_workload_ids": list(self.jobs.warm),
            },
            "performance_estimates": self._performance_estimates(),
            "asking_prices": self.config.asking_prices,
        }
        if gpus:
            beat["gpus"] = gpus
        return beat

    def _performance_estimates(self) -> dict[str, Any]:
        estimates: dict[str, Any] = {
            "supported_runtimes": list(self.config.supported_runtimes),
            "max_concurrent_containers": self.config.max_concurrent_jobs,
        }
        onnx = self.jobs.runtimes.get("onnx")
        if onnx is not None:  # extension: the ONNX tasks it has a model for
            estimates["onnx_tasks"] = list(getattr(onnx, "tasks", ()))
        if "wasm" in self.config.supported_runtimes:
            estimates["wasm_memory_limit_mb"] = self.config.wasm_memory_mb
        if self.config.runtime == "mock" and self.config.mock_tokens_per_second > 0:
            estimates["estimated_llm_tok_s"] = self.config.mock_tokens_per_second
        if self.rtt.latest_ms is not None:
            estimates["nats_rtt_ms"] = self.rtt.latest_ms
        return estimates

    async def _heartbeats(self) -> None:
        await asyncio.sleep(self.first_heartbeat_delay)
        interval = self.config.heartbeat_interval
        next_at = time.monotonic()
        while True:
            try:
                await publish(self.nc, self.subject("heartbeat"), await self.heartbeat())
            except Exception:
                logger.exception("heartbeat failed")
            self.rtt.measure_soon()
            next_at = max(next_at + interval, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())

    # -- pairing -----------------------------------------------------------------------

    async def _ask(self) -> float | None:
        """One pairing request, acted upon; how long to wait before the next one, or
        None when the coordinator did not answer."""
        request = {"host_id": self.host_id}
        if self.identity.keyed:  # it may not register before it is paired: say it here
            request |= await self._description()
        try:
            reply = await self.nc.request(
                self.identity.pairing_subject(), encode(request), timeout=PAIRING_TIMEOUT
            )
        except (nats.errors.Error, TimeoutError) as exc:
            logger.info("pairing request: %s", exc or type(exc).__name__)
            return None
        return await self._on_pairing_reply(decode(reply.data) or {})

    async def _pair(self, first: float | None = None) -> None:
        """Ask for a code until paired (an Island with a key: and then, until told that
        it is no longer paired, which only a new connection can bring)."""
        failures = 0
        wait = first
        while self.identity.keyed or not self.state.paired:
            if wait is None:
                if failures == 0:
                    self.say("Waiting for the coordinator to answer the pairing request…")
                await asyncio.sleep(backoff_delay(failures))
                failures += 1
            else:
                failures = 0
                if self.ready and self.identity.keyed:
                    return  # paired; a reconnection asks again
                await asyncio.sleep(wait)
            wait = await self._ask()

    async def _on_pairing_reply(self, reply: dict[str, Any]) -> float:
        """Act on a pairing reply; returns how long to wait before asking again."""
        if reply.get("success") is True and isinstance(reply.get("code"), str):
            if self.identity.keyed:  # a code is for a key nobody has paired: wait for it
                await self._stand_down()
            if self.state.paired:
                self._mark_paired(False, account_id=None, paired_at=None)
                self.say("This Island is no longer paired with an account")
            url = reply.get("pair_url") or _pair_url(self.config.api_url)
            self._showed_code = True
            self.say(f"Pairing code: {reply['code']}")
            self.say(f"Enter this code at {url}")
            expires = reply.get("expires_in_seconds")
            valid = (
                isinstance(expires, int | float) and not isinstance(expires, bool) and expires > 0
            )
            return float(expires) if valid else 600.0  # type: ignore[arg-type]
        if reply.get("error") == "already paired":
            if not self.state.paired:
                account = reply.get("account_id", self.state.account_id)
                paired_at = reply.get("paired_at") or self.state.paired_at or _now_iso()
                self._mark_paired(True, account_id=account, paired_at=paired_at)
                if self._showed_code:  # someone just entered it
                    self.say(f"Paired with account {account} — this Island is ready")
                else:
                    self.say("This Island is already paired with an account — it is ready")
            await self._get_ready()
            return 0.0
        self.say(f"Pairing failed: {reply.get('error') or 'unexpected reply'}; retrying")
        return self.config.pairing_retry

    async def _on_paired(self, msg: Msg) -> None:
        payload = decode(msg.data)
        if payload is None or payload.get("host_id") not in (None, self.host_id):
            logger.warning("ignored a paired message: %.200r", msg.data)
            return
        account = payload.get("account_id")
        paired_at = payload.get("paired_at") or _now_iso()
        self._mark_paired(True, account_id=account, paired_at=paired_at)
        if self._pairing is not None and asyncio.current_task() is not self._pairing:
            self._pairing.cancel()
        self.say(f"Paired with account {account} — this Island is ready")

    async def _unpaired(self, msg: Msg) -> None:
        """Unpaired by its owner: ask for a new code at once (an Island with a key
        learns it from its next connection instead)."""
        payload = decode(msg.data)
        if payload is None or payload.get("host_id") not in (None, self.host_id):
            return
        self._mark_paired(False, account_id=None, paired_at=None)
        self.say("This Island is no longer paired with an account")
        if not self.identity.keyed and (self._pairing is None or self._pairing.done()):
            self._pairing = asyncio.create_task(self._pair())

    def _mark_paired(self, paired: bool, *, account_id: Any, paired_at: Any) -> None:
        self.state.paired = paired
        self.state.account_id = account_id
        self.state.paired_at = paired_at
        try:
            state_file.save(self.config.state_dir, self.state)
        except ConfigError as exc:
            self.say(f"Warning: {exc}")


def _pair_url(api_url: str | None) -> str:
    if not api_url:
        return "/pair on your coordinator's portal"
    return api_url.rstrip("/").removesuffix("/api/v1") + "/pair"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()
