"""Which handler turns which JetStream message into which Celery task.

A *kind* is the last token of ``host.{id}.{kind}`` (or ``register`` for
``coordinator.hosts.register``). Plugging a new kind in takes one decorated parse
function in an app's ``handlers`` module (``compute/handlers.py``: the bridge imports
every installed app's, :func:`discover`); the bridge loop never changes::

    @registry.register("status", stream=subjects.JOB_EVENTS_STREAM,
                       task=tasks.ingest_job_status, max_bytes=16_384)
    def parse_status(msg: Incoming) -> dict:
        ...  # validate, raise schemas.Invalid on bad input, return plain data

The bridge collects a batch from the stream's durable consumer, calls the parse
function of each message (a bad one is logged and terminated, never retried), and sends
the kind's task ``task.apply_async(args=(pack(records), acks))``. The task stores the records
and, after its transaction committed, acks the ``acks`` reply subjects
(:func:`sail.acks.ack`); so a message leaves JetStream only once it is in the database.

A stream may name one task for batches that hold several of its kinds (:func:`together`):
they travel in one message, ``task.apply_async(args=([(kind, pack(records), acks),
...],))``, in the order given, and one worker applies them one after the other.
"""

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.module_loading import autodiscover_modules


@dataclass(frozen=True, slots=True)
class Incoming:
    subject: str
    host_id: str | None
    kind: str
    data: bytes
    # When the NATS server stored the message: the coordinator's clock, and the same on
    # every redelivery, so handling a message twice gives the same result.
    received_at: datetime


@dataclass(frozen=True)
class Kind:
    name: str
    stream: str
    parse: Callable[[Incoming], Any]
    task: Any  # the Celery task that stores the records
    max_bytes: int
    # How the list of records travels to the task (e.g. as one JSON string).
    pack: Callable[[list[Any]], Any] = list


KINDS: dict[str, Kind] = {}
# stream -> (task, kinds in the order their records are applied); see the module.
TOGETHER: dict[str, tuple[Any, tuple[str, ...]]] = {}
# Long-running coroutines the bridge starts next to its consumers, ``service(nc, stop)``
# (e.g. a core-NATS relay); each must return soon after ``stop`` is set.
SERVICES: list[Callable[[Any, Any], Coroutine[Any, Any, None]]] = []


# What the bridge asks of the apps, which it does not import: name -> the function one
# app's handlers module registered (:func:`answers`). ``pairing(data, key)``: the reply
# to a pairing request (blocking); ``keyed_islands(host_ids)``: those with a key of their
# own (blocking); ``callout(nats_url, stopping, js)``: the auth callout's loop.
ANSWERS: dict[str, Callable[..., Any]] = {}


def answers(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        ANSWERS[name] = function
        return function

    return decorate


def service(
    run: Callable[[Any, Any], Coroutine[Any, Any, None]],
) -> Callable[[Any, Any], Coroutine[Any, Any, None]]:
    SERVICES.append(run)
    return run


def together(stream: str, *, task: Any, order: tuple[str, ...]) -> None:
    TOGETHER[stream] = (task, order)


def register(
    kind: str,
    *,
    stream: str,
    task: Any,
    max_bytes: int = 64 * 1024,
    pack: Callable[[list[Any]], Any] = list,
) -> Callable[[Callable[[Incoming], Any]], Callable[[Incoming], Any]]:
    def decorate(parse: Callable[[Incoming], Any]) -> Callable[[Incoming], Any]:
        KINDS[kind] = Kind(kind, stream, parse, task, max_bytes, pack)
        return parse

    return decorate


def streams_with_handlers() -> set[str]:
    return {kind.stream for kind in KINDS.values()}


def discover() -> dict[str, Kind]:
    """Import the ``handlers`` module of every installed app, so that their kinds and
    answers are registered (Django's way: as the admin finds ``admin`` modules)."""
    autodiscover_modules("handlers")
    return KINDS
