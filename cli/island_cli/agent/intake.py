"""The intake of job assignments (``host.{id}.jobs``), a part of :class:`.jobs.JobRunner`.

The durable pull consumer ``host-{host_id}`` on the JetStream stream ``JOBS`` (created
when missing: explicit ack, max_deliver 5, ack_wait 60 s), or a core NATS subscription
while the stream does not exist (rechecked periodically). A message is acked on receipt,
before execution; a slot of ``max_concurrent_jobs`` is taken before a message is fetched,
so the Island never takes more than it can run.
"""

import asyncio
import contextlib
import logging
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from .config import AgentConfig
from .connection import backoff_delay
from .wire import host_subject

logger = logging.getLogger(__name__)
FETCH_TIMEOUT = 5.0


class StreamMissing(Exception):
    pass


class Intake:
    """What :class:`.jobs.JobRunner` sets up and runs for its intake."""

    nc: Client
    config: AgentConfig
    host_id: str
    bind: bool
    _pull_sub: Any
    _core_sub: Any
    _slots: asyncio.Semaphore
    _accepting: bool

    def _accept(self, data: bytes) -> bool:
        raise NotImplementedError

    def _subject(self, kind: str) -> str:
        return host_subject(self.host_id, kind)

    async def _jetstream_intake(self) -> None:
        """Keep a pull consumer going; while the stream is missing, use core NATS and
        look for the stream again every ``stream_recheck_interval`` seconds."""
        failures = 0
        while True:
            sub = await self._set_up_intake()
            if sub is None:
                failures += self._core_sub is None
                wait = (
                    self.config.stream_recheck_interval
                    if self._core_sub
                    else backoff_delay(failures)
                )
                await asyncio.sleep(wait)
                continue
            try:
                await self._pull(sub)
            except Exception as exc:
                logger.warning("jobs consumer failed, setting it up again: %s", exc)
                self._pull_sub = None
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
                await asyncio.sleep(backoff_delay(failures))
                failures += 1

    async def _set_up_intake(self) -> Any:
        """The pull subscription, or None (with a core subscription if the stream is
        missing)."""
        if self._pull_sub is not None:
            return self._pull_sub
        try:
            self._pull_sub = await self._pull_subscription()
        except StreamMissing:
            await self._subscribe_core()
            return None
        except Exception as exc:
            logger.warning("cannot set up the jobs consumer: %s", exc)
            return None
        if self._core_sub is not None:
            await self._core_sub.unsubscribe()
            self._core_sub = None
            logger.info("jobs: switched to the JetStream stream %s", self.config.jobs_stream)
        return self._pull_sub

    async def _pull_subscription(self) -> Any:
        js = self.nc.jetstream()
        stream = self.config.jobs_stream
        if self.bind:
            return await js.pull_subscribe_bind(durable=f"host-{self.host_id}", stream=stream)
        try:
            await js.stream_info(stream)
        except (
            nats.js.errors.NotFoundError,
            nats.js.errors.ServiceUnavailableError,  # an account without JetStream
            nats.errors.NoRespondersError,
        ) as exc:
            raise StreamMissing(stream) from exc
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=5,
            ack_wait=60,
            max_ack_pending=self.config.max_concurrent_jobs,
        )
        return await js.pull_subscribe(
            self._subject("jobs"), durable=f"host-{self.host_id}", stream=stream, config=config
        )

    async def _pull(self, sub: Any) -> None:
        while True:
            await self._slots.acquire()
            try:
                messages = await sub.fetch(1, timeout=FETCH_TIMEOUT)
            except nats.errors.TimeoutError:
                self._slots.release()
                continue
            except BaseException:
                self._slots.release()
                raise
            for message in messages:
                if not self._accepting:
                    self._slots.release()
                    await message.nak()  # shutting down: leave it for the next start
                    return
                await message.ack()
                if not self._accept(message.data):
                    self._slots.release()

    async def _subscribe_core(self) -> None:
        if self._core_sub is None:
            self._core_sub = await self.nc.subscribe(self._subject("jobs"), cb=self._on_core_job)
            logger.info("jobs: no stream %s, using a core subscription", self.config.jobs_stream)

    async def _on_core_job(self, msg: Msg) -> None:
        if not self._accepting:
            return
        await self._slots.acquire()
        if not self._accept(msg.data):
            self._slots.release()
