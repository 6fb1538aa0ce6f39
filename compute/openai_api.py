"""``POST /api/v1/chat/completions``, OpenAI-compatible: the official ``openai`` package
works against it, streaming or not, errors included.

A request becomes a job of the Cargo named by ``model`` (through the same submission
service as ``POST /jobs``), with input ``{messages, prompt, max_tokens, temperature}``.
Its answer is read from the job's events (compute.feed): live from the start when this
request publishes the job's assignment itself (it subscribes first), from the stream
otherwise (an idempotent retry of a job that already runs); nothing polls. An API key
takes the fast lane (portal.api.lane), a browser session Django's path: both call
:func:`create` and :func:`answer`. Unknown OpenAI fields
(``top_p``, ``user``, ``seed``, ...) are accepted and ignored; known ones are type-checked.
Errors carry ``{"error": {"message", "code", "type"}}``, which the ``openai`` package reads.
"""

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from compute.feed import Feed
from compute.models import Job
from compute.openai_input import ChatInput, job_input
from compute.services import dispatch, idempotency, submission
from compute.services.publish import Outbox
from compute.streaming import KEEP_ALIVE, authorize, db, held, slots, sse_response
from core import tx
from portal.api.base import validated
from portal.api.errors import REFUSALS, UNAVAILABLE_ERRORS, json_response
from portal.api.lane import Call, Reply
from portal.keys.limits import KeyLimits

logger = logging.getLogger(__name__)
SCOPE = "POST /chat/completions"
# A job that ended without a result: (HTTP status, error code).
JOB_ENDINGS = {
    "failed": (502, "job_failed"),
    "timeout": (504, "job_timeout"),
    "cancelled": (409, "job_cancelled"),
}


# --- submission (sync: the API's checks and the job service) ------------------------------
@dataclass
class Chat:
    user_id: Any
    job: Job
    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    slot: str | None


async def create(
    db: tx.Db,
    *,
    user: Any,
    data: dict,
    body: Any,
    key: str | None,
    outbox: Outbox,
    api_key: KeyLimits | None = None,
) -> Job:
    """The job of a chat request (``data``: its validated fields). With an
    Idempotency-Key, a retry gets the first request's job, whose completion it reads.
    ``api_key``: the limits of the request's key."""
    fields = {"user": user, "workload": data["model"], "job_input": job_input(data),
              "outbox": outbox, "key": api_key}  # fmt: skip
    if key is None:
        return await submission.submit_job(db, **fields)
    key, made = idempotency.check_key(key), []

    async def run() -> tuple[int, dict]:
        made.append(await submission.submit_job(db, idempotency_key=key, **fields))
        return 201, {"job_id": str(made[0].pk)}

    _, stored, _ = await idempotency.run_once(
        db, user_id=user.pk, key=key, scope=SCOPE, body=body, run=run
    )
    if made:
        return made[0]
    # A retry: the stored answer names the first request's job.
    return await db.call(
        lambda: Job.objects.select_related("cargo").get(pk=stored["job_id"], user=user)
    )


def _chat(user: Any, data: dict, job: Job, slot: str | None) -> Chat:
    options = data.get("stream_options") or {}
    return Chat(
        user_id=user.pk,
        job=job,
        model=data["model"],
        stream=data["stream"],
        include_usage=bool(options.get("include_usage")),
        max_tokens=data.get("max_tokens") or data.get("max_completion_tokens"),
        slot=slot,
    )


def submit(request: HttpRequest, outbox: Outbox) -> Chat:
    """Django's path (sync, in a thread): the API's checks, then :func:`create`."""
    drf = authorize(request, "POST")
    data = validated(ChatInput, drf.data)
    user = drf.user
    slot = slots.acquire(user.pk) if data["stream"] else None
    try:
        key = request.headers.get("Idempotency-Key")
        job = tx.sync(create, user=user, data=data, body=drf.data, key=key, outbox=outbox,
                      api_key=getattr(drf.auth, "limits", None))  # fmt: skip
    except BaseException:
        if slot:
            slots.release_sync(user.pk, slot)
        raise
    return _chat(user, data, job, slot)


async def complete_fast(call: Call) -> Reply:
    """``POST /chat/completions`` in the API's fast lane: checks, submission and the
    answer on the event loop (its own database connection on Postgres). A request that
    asks for a stream takes its stream slot with the rate limit, in one round trip; the
    errors come in the usual path's order all the same (the body's before the quota's)."""
    asked = slots.take(call.user.pk) if _asks_for_stream(call.body) else None
    usage = await call.limit(take=asked)
    taken = asked.member if asked and usage.taken else None
    slot = None
    try:
        body = call.json()
        data = validated(ChatInput, body)
        if data["stream"]:
            slot = await slots.kept(call.user.pk, usage, asked)
    finally:
        if taken and slot is None:  # refused, or no stream after all: given back
            await slots.release(call.user.pk, taken)
    outbox, key = Outbox(), call.header("Idempotency-Key")
    try:
        job = await tx.work(
            create, user=call.user, data=data, body=body, key=key, outbox=outbox,
            api_key=call.key.limits,
        )  # fmt: skip
    except BaseException:
        if slot:
            await slots.release(call.user.pk, slot)
        raise
    chat = _chat(call.user, data, job, slot)
    try:
        status, body, stream = await answer(chat, outbox)
    except BaseException:
        if slot:
            await slots.release(call.user.pk, slot)
        raise
    if stream is not None:
        return Reply(stream=stream)
    return Reply(status=status, body=body, headers={} if status == 200 else NO_RETRY)


async def answer(chat: Chat, outbox: Outbox) -> tuple[int, Any, AsyncIterator[bytes] | None]:
    """Publish the job's assignment (``outbox``) after subscribing to its events, then
    the completion: ``(status, body, None)``, or ``(200, None, chunks)`` for a stream
    (the chunks hold the stream slot)."""
    feed = await Feed.open(chat.job, assignment=outbox.items[0] if outbox.items else None)
    try:
        await dispatch.deliver(outbox)
    except BaseException:
        await feed.close()
        raise
    if not chat.stream:
        return *await _complete(chat, feed), None
    assert chat.slot is not None
    return 200, None, held(chat.user_id, chat.slot, _chunks(chat, feed))


NO_RETRY = {"x-should-retry": "false"}  # the job ran and failed: a new one is the caller's call


complete_fast.openai = True  # type: ignore[attr-defined]  # its errors carry OpenAI's type
complete_fast.limits_itself = True  # type: ignore[attr-defined]


def _asks_for_stream(body: bytes) -> bool:
    """Whether the body is a JSON object with ``"stream": true`` (a glance: validation
    decides, and a stream asked for otherwise takes its slot on its own)."""
    try:
        found = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(found, dict) and found.get("stream") is True


# --- the answer ----------------------------------------------------------------------------
def _island_row(job_id: Any) -> dict | None:
    row = Job.objects.filter(pk=job_id).values("island_id", "island__name").first()
    if not (row and row["island_id"]):
        return None
    return {"id": str(row["island_id"]), "name": row["island__name"] or ""}


async def _island_of(job_id: Any) -> dict | None:
    """The Island that served the job (extension): read once, when the answer ends."""
    return await tx.in_thread(_island_row, job_id)


class Answer:
    """What a job produced, gathered from its events."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.chunks = 0
        self.state = ""
        self.usage: dict | None = None
        self.error: str | None = None
        self.island: dict | None = None  # from the job's last assignment, when seen

    def take(self, event: dict) -> None:
        kind = event["type"]
        if kind == "token":
            self.chunks += 1
        elif kind == "status":
            self.state = str(event.get("state", ""))
            if event.get("phase") == "assigned" and "island_name" in event:
                self.island = {"id": event["island_id"], "name": event["island_name"]}
            elif self.state == "queued":
                self.island = None
        elif kind == "done":
            self.usage = event.get("usage") or {}
        elif kind == "error":
            self.error = str(event.get("error") or "The job failed")

    def usage_out(self) -> dict:
        usage = self.usage or {}
        prompt = usage.get("prompt_tokens") or 0
        completion = usage.get("completion_tokens")
        completion = self.chunks if completion is None else completion
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def finish_reason(self) -> str:
        limit = self.chat.max_tokens
        return "length" if limit and self.usage_out()["completion_tokens"] >= limit else "stop"

    def failure(self) -> tuple[int, dict]:
        status, code = JOB_ENDINGS.get(self.state, (502, "job_failed"))
        message = self.error or "The job failed"
        return status, {"error": {"message": message, "code": code, "type": "server_error"}}


def _head(chat: Chat, obj: str) -> dict:
    return {
        "id": str(chat.job.pk),
        "object": obj,
        "created": int(chat.job.created_at.timestamp()),
        "model": chat.model,
        "system_fingerprint": None,
    }


async def _complete(chat: Chat, feed: Feed) -> tuple[int, dict]:
    answer, content = Answer(chat), []
    async for batch in feed.batches():
        for event in batch:
            answer.take(event)
            if event["type"] == "token":
                content.append(event["content"])
    if answer.error is not None or answer.usage is None:
        return answer.failure()
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": "".join(content), "refusal": None},
        "logprobs": None,
        "finish_reason": answer.finish_reason(),
    }
    body = {
        **_head(chat, "chat.completion"),
        "choices": [choice],
        "usage": answer.usage_out(),
        "island": answer.island or await _island_of(chat.job.pk),  # extension
    }
    return 200, body


def _data(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def _chunks(chat: Chat, feed: Feed) -> Any:
    """``chat.completion.chunk`` events: the role, each token, the finish reason (and the
    usage when asked), then ``data: [DONE]``.

    While the job waits for an Island, chunks with an empty content carry its ``status``
    (extension: the job stream's event without ``type`` and ``job_id``: queued, why,
    until when), and one more the status that ends the wait: a client that reads only
    OpenAI's fields sees an empty delta, as in the first chunk."""
    head, answer = _head(chat, "chat.completion.chunk"), Answer(chat)
    extra = {"usage": None} if chat.include_usage else {}
    waited = False

    def chunk(delta: dict, finish: str | None = None, **more: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _data({**head, "choices": [choice], **extra, **more})

    yield chunk({"role": "assistant", "content": ""})
    async for batch in feed.batches():
        if not batch:
            yield KEEP_ALIVE
            continue
        out = []
        for event in batch:
            answer.take(event)
            if event["type"] == "status" and (waited or event.get("state") == "queued"):
                waited = event.get("state") == "queued"
                status = {k: v for k, v in event.items() if k not in ("type", "job_id")}
                out.append(chunk({"content": ""}, status=status))
            elif event["type"] == "token":
                out.append(chunk({"content": event["content"]}))
            elif event["type"] == "done":
                island = answer.island or await _island_of(chat.job.pk)
                out.append(chunk({}, answer.finish_reason(), island=island))
                if chat.include_usage:
                    out.append(_data({**head, "choices": [], "usage": answer.usage_out()}))
            elif event["type"] == "error":
                out.append(_data(answer.failure()[1]))
        yield b"".join(out)
    yield b"data: [DONE]\n\n"


@csrf_exempt  # a session POST is CSRF-checked by the API's session authentication
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    outbox = Outbox()
    try:
        chat = await db(submit, request, outbox)
    except (*REFUSALS, *UNAVAILABLE_ERRORS) as exc:
        return json_response(exc, openai=True, allow="POST")
    try:
        status, body, stream = await answer(chat, outbox)
    except BaseException:
        if chat.slot:
            await slots.release(chat.user_id, chat.slot)
        raise
    if stream is not None:
        return sse_response(stream)
    return JsonResponse(body, status=status, headers=None if status == 200 else NO_RETRY)
