"""What the coordinator publishes about jobs on NATS: assignments and cancels to Islands,
and the normalized per-job event stream that SSE clients read.

Streams (both created here when missing, idempotently, next to the bridge's own setup):
- ``JOBS`` captures ``host.*.jobs``; field Islands read it through their durable
  ``host-{id}`` consumers (island-protocol.md).
- ``JOB_UPDATES`` captures ``jobs.*.events``: one JSON event per thing a client sees
  (token, progress, status, image, done, error), deduplicated by ``Nats-Msg-Id``; kept in
  memory (sail.streams), since the job row is what lasts.
"""

import logging
import threading
from typing import Any

import orjson
from nats.js.errors import NoStreamResponseError, NotFoundError

from sail import subjects
from sail.client import sail
from sail.streams import JOB_UPDATES, JOBS

logger = logging.getLogger(__name__)


def job_events_subject(job_id: object) -> str:
    return f"jobs.{job_id}.events"


_ensured = threading.Event()


def ensure_streams(force: bool = False) -> None:
    """Create ``JOBS`` and ``JOB_UPDATES`` if they are missing (never reconfigure them:
    the bridge does, on every start: sail.streams)."""
    if _ensured.is_set() and not force:
        return

    async def go(nc: Any) -> None:
        js = nc.jetstream()
        for config in (JOBS, JOB_UPDATES):
            try:
                await js.stream_info(config.name)
            except NotFoundError:
                try:
                    await js.add_stream(config)
                except Exception:  # a twin created it in between
                    await js.stream_info(config.name)

    sail.call(go)
    _ensured.set()


def publish_assignment(
    host_id: object, payload: dict, *, msg_id: str, events: list[tuple[str, dict]] = ()
) -> None:
    """``host.{id}.jobs`` through JetStream (``msg_id``, job and attempt, dedupes
    retries); once the server has stored it, the job's client ``events``. One hand-off
    to the connection's loop for both: this is on the path to the first token."""
    subject = subjects.host(str(host_id), "jobs")
    body, headers = orjson.dumps(payload), {"Nats-Msg-Id": msg_id}

    async def go(nc: Any) -> None:
        await nc.jetstream().publish(subject, body, headers=headers)
        try:  # the assignment is stored: nothing here may make the caller retry it
            await _publish_events(nc, payload["job_id"], events)
        except Exception:
            logger.exception("could not publish events of job %s", payload["job_id"])

    ensure_streams()
    try:
        sail.call(go)
    except NoStreamResponseError:
        ensure_streams(force=True)
        sail.call(go)


def publish_cancel(host_id: object, job_id: object) -> None:
    try:
        sail.publish(subjects.host(str(host_id), "cancel"), {"job_id": str(job_id)})
    except Exception:
        # The lease sweep and the Island's own time limit still end the job.
        logger.exception("could not publish cancel of job %s to %s", job_id, host_id)


def publish_job_events(job_id: object, events: list[tuple[str, dict]]) -> None:
    """Publish ``(msg_id, event)`` pairs in order on ``jobs.{job_id}.events``.

    Core NATS publishes on one connection keep their order, and the stream captures
    them with ``Nats-Msg-Id`` dedupe; one flush per batch instead of one JetStream ack
    round trip per token is what makes thousands of tokens per second cheap. Never
    raises: an event a client misses is recoverable from the job row, a crashed handler
    of Island messages is not.
    """
    if not events:
        return
    try:
        ensure_streams()
        sail.call(lambda nc: _publish_events(nc, job_id, events))
    except Exception:
        logger.exception("could not publish events of job %s", job_id)


async def _publish_events(nc: Any, job_id: object, events: list[tuple[str, dict]]) -> None:
    if not events:
        return
    subject = job_events_subject(job_id)
    for msg_id, event in events:
        await nc.publish(subject, orjson.dumps(event), headers={"Nats-Msg-Id": msg_id})
    await nc.flush()
