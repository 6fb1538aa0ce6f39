"""Taking and running job assignments (``host.{id}.jobs``).

Intake: :mod:`.intake` (the ``JOBS`` stream's pull consumer, or core NATS while the
stream does not exist).

Execution: ``started``, then the runtime's events as output (seq from 1), progress and
image messages, a final empty chunk with ``is_final``, and ``succeeded`` carrying
``usage`` (our extension); or ``failed`` with ``error``, or ``cancelled``. The lease is
renewed while the job runs, and the time limit is enforced.
"""

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from .config import AgentConfig
from .intake import Intake
from .runtimes import JobFailed, Runtime
from .wire import decode, now_ms, publish, side_message, status_usage

logger = logging.getLogger(__name__)

REMEMBERED_JOBS = 1000
WARM_WORKLOADS = 32


@dataclass
class RunningJob:
    job_id: str
    workload_id: Any
    runtime_type: str
    started: float = field(default_factory=time.monotonic)
    tokens: int = 0
    cancel_reason: str | None = None
    task: asyncio.Task | None = None

    def metrics(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "job_type": self.runtime_type,
            "duration_ms": int((time.monotonic() - self.started) * 1000),
            "tokens_generated": self.tokens,
        }


class _Remembered(OrderedDict):
    """A bounded set of recent keys (duplicate deliveries, early cancels, warm Cargos)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def add(self, key: Any) -> None:
        self[key] = True
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class JobRunner(Intake):
    def __init__(
        self,
        *,
        nc: Client,
        host_id: str,
        config: AgentConfig,
        runtimes: dict[str, Runtime],
        use_jetstream: bool = True,
        bind: bool = False,
    ):
        self.nc = nc
        self.host_id = host_id
        self.config = config
        self.runtimes = runtimes
        self.use_jetstream = use_jetstream
        # An Island with its own key reads the consumer the coordinator made for it, and
        # may do nothing else of JetStream; a field Island makes its own if it can.
        self.bind = bind
        self.running: dict[str, RunningJob] = {}
        self.warm = _Remembered(WARM_WORKLOADS)
        self._seen = _Remembered(REMEMBERED_JOBS)
        self._cancelled_early = _Remembered(REMEMBERED_JOBS)
        self._slots = asyncio.Semaphore(config.max_concurrent_jobs)
        self._subs: list[Any] = []
        self._core_sub: Any = None
        self._pull_sub: Any = None
        self._intake: asyncio.Task | None = None
        self._accepting = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._accepting = True
        self._subs.append(await self.nc.subscribe(self._subject("cancel"), cb=self._on_cancel))
        if self.use_jetstream:
            await self._set_up_intake()  # ready before the Island says it is connected
            self._intake = asyncio.create_task(self._jetstream_intake())
        else:
            await self._subscribe_core()

    async def restart_intake(self) -> None:
        """After a reconnect: a pull request in flight may have died with the old server
        connection, so pull again at once rather than after its timeout."""
        if self._intake is None or not self._accepting:
            return
        self._intake.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._intake
        self._intake = asyncio.create_task(self._jetstream_intake())

    async def stop_intake(self) -> None:
        """Take no more jobs; running ones go on."""
        self._accepting = False
        if self._intake is not None:
            self._intake.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._intake
        for sub in (self._core_sub, self._pull_sub):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        self._core_sub = self._pull_sub = None

    async def wait(self, grace: float, force: asyncio.Event | None = None) -> int:
        """Wait up to ``grace`` seconds for running jobs (less if ``force`` is set), then
        stop the rest without a final status: the offline heartbeat lets the coordinator
        requeue them. Returns how many were stopped."""
        tasks = [job.task for job in self.running.values() if job.task is not None]
        if tasks:
            waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(asyncio.wait(tasks))]
            if force is not None:
                waiters.append(asyncio.ensure_future(force.wait()))
            await asyncio.wait(waiters, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        left = [task for task in tasks if not task.done()]
        for job in self.running.values():
            job.cancel_reason = "shutdown"
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return len(left)

    def active_job_metrics(self) -> list[dict[str, Any]]:
        return [job.metrics() for job in self.running.values()]

    # -- intake ------------------------------------------------------------------------

    def _accept(self, data: bytes) -> bool:
        """Start the job in ``data``; False (and nothing started) for a bad message, a
        duplicate delivery, a job cancelled before it arrived, or during shutdown."""
        assignment = decode(data)
        job_id = assignment.get("job_id") if assignment else None
        if not isinstance(job_id, str | int) or isinstance(job_id, bool) or not self._accepting:
            logger.warning("ignored a job message: %.200r", data)
            return False
        job_id = str(job_id)
        if job_id in self._seen:
            logger.info("job %s delivered again; ignored", job_id)
            return False
        self._seen.add(job_id)
        if job_id in self._cancelled_early:
            asyncio.create_task(self._status(job_id, "cancelled"))  # noqa: RUF006
            return False
        job = RunningJob(
            job_id=job_id,
            workload_id=assignment.get("workload_id"),  # type: ignore[union-attr]
            runtime_type=str(assignment.get("runtime_type") or "container"),  # type: ignore[union-attr]
        )
        self.running[job_id] = job
        job.task = asyncio.create_task(self._execute(job, assignment))  # type: ignore[arg-type]
        job.task.add_done_callback(lambda _: self._slots.release())
        return True

    async def _on_cancel(self, msg: Msg) -> None:
        payload = decode(msg.data)
        job_id = str(payload.get("job_id")) if payload and payload.get("job_id") else None
        if job_id is None:
            return
        job = self.running.get(job_id)
        if job is not None and job.task is not None:
            job.cancel_reason = "cancel"
            job.task.cancel()
        elif job_id not in self._seen:
            self._cancelled_early.add(job_id)

    # -- execution ---------------------------------------------------------------------

    async def _status(self, job_id: str, state: str, **extra: Any) -> None:
        payload = {"job_id": job_id, "state": state, **extra, "timestamp": now_ms()}
        await publish(self.nc, self._subject("status"), payload)

    def _time_limit(self, job: RunningJob, assignment: dict[str, Any]) -> float:
        # Extensions: ``timeout_seconds``, or ``time_limit_seconds`` (the Cargo's limit,
        # as our coordinator sends it).
        for key in ("timeout_seconds", "time_limit_seconds"):
            own = assignment.get(key)
            if isinstance(own, int | float) and not isinstance(own, bool) and own > 0:
                return float(own)
        return self.config.time_limit(job.runtime_type)

    async def _execute(self, job: RunningJob, assignment: dict[str, Any]) -> None:
        lease = asyncio.create_task(self._renew_lease(job.job_id))
        try:
            await self._status(job.job_id, "started")
            runtime = self.runtimes.get(job.runtime_type)
            if runtime is None:
                raise JobFailed(f"Unsupported runtime: {job.runtime_type}")
            limit = self._time_limit(job, assignment)
            try:
                async with asyncio.timeout(limit):
                    seq, usage, result = await self._stream(job, runtime, assignment)
            except TimeoutError:
                raise JobFailed(f"Timeout: job exceeded {limit:g}s limit") from None
            await self._output(job.job_id, seq + 1, "", is_final=True)
            extra: dict[str, Any] = {"usage": status_usage(usage)} if usage else {}
            if result is not None:
                extra["result"] = result
            await self._status(job.job_id, "succeeded", **extra)
            if job.workload_id is not None:
                self.warm.add(job.workload_id)
        except JobFailed as exc:
            await self._status(job.job_id, "failed", error=str(exc) or "Job failed")
        except asyncio.CancelledError:
            if job.cancel_reason != "cancel":
                raise
            await self._status(job.job_id, "cancelled")
        except Exception as exc:
            logger.exception("job %s crashed", job.job_id)
            await self._status(job.job_id, "failed", error=f"Island error: {type(exc).__name__}")
        finally:
            lease.cancel()
            self.running.pop(job.job_id, None)

    async def _stream(
        self, job: RunningJob, runtime: Runtime, assignment: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None, Any]:
        """Publish the runtime's events; its usage and ``result`` (the structured output
        of a Cargo such as OCR, sent with ``succeeded``) once it is done."""
        seq, usage, result = 0, None, None
        async with contextlib.aclosing(runtime.run(assignment)) as events:  # type: ignore[type-var]
            async for event in events:
                kind = event.get("type")
                if kind == "token":
                    seq += 1
                    job.tokens += 1
                    if seq == 1:
                        await self._status(job.job_id, "streaming")
                    await self._output(job.job_id, seq, str(event.get("content", "")))
                elif kind in ("progress", "image"):
                    await publish(self.nc, self._subject(kind), side_message(job.job_id, event))
                elif kind == "done":
                    usage, result = event.get("usage"), event.get("result")
                elif kind == "error":
                    raise JobFailed(str(event.get("message") or "Workload error"))
        return seq, usage, result

    async def _output(self, job_id: str, seq: int, chunk: str, *, is_final: bool = False) -> None:
        payload = {"job_id": job_id, "seq": seq, "chunk": chunk, "is_final": is_final}
        await publish(self.nc, self._subject("output"), payload)

    async def _renew_lease(self, job_id: str) -> None:
        payload = {"job_id": job_id, "extend_seconds": self.config.lease_extend_seconds}
        while True:
            await asyncio.sleep(self.config.lease_interval)
            await publish(self.nc, self._subject("lease"), payload)
