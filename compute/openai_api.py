"""``POST /api/v1/chat/completions``, OpenAI-compatible: the official ``openai`` package
works against it, streaming or not, errors included.

A request becomes a job of the Cargo named by ``model`` (through the same submission
service as ``POST /jobs``), with input ``{messages, prompt, max_tokens, temperature}``.
Its answer is read from the job's event stream (:func:`compute.streaming.job_events`):
the JetStream consumer delivers from the stream's start, so nothing the Island produces
between submission and subscription is missed, and nothing polls. Unknown OpenAI fields
(``top_p``, ``user``, ``seed``, ...) are accepted and ignored; known ones are type-checked.
Errors carry ``{"error": {"message", "code", "type"}}``, which the ``openai`` package reads.
"""

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers
from rest_framework.exceptions import APIException

from compute.models import Island, Job
from compute.services import idempotency, jobs
from compute.streaming import (
    KEEP_ALIVE,
    authorize,
    db,
    error_response,
    held,
    job_events,
    slots,
    sse_response,
)
from portal.api.base import validated

logger = logging.getLogger(__name__)
SCOPE = "POST /chat/completions"
ROLES = ["system", "developer", "user", "assistant", "tool"]
ERROR_TYPES = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}
# A job that ended without a result: (HTTP status, error code).
JOB_ENDINGS = {
    "failed": (502, "job_failed"),
    "timeout": (504, "job_timeout"),
    "cancelled": (409, "job_cancelled"),
}


# --- input -------------------------------------------------------------------------------
class StrictBoolean(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class MessageInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLES)
    content = serializers.JSONField(allow_null=True)
    name = serializers.CharField(max_length=100, required=False)

    def validate_content(self, value: Any) -> str:
        """A string, or OpenAI's list of ``{"type": "text", "text"}`` parts."""
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in value
        ):
            return "".join(p["text"] for p in value)
        raise serializers.ValidationError("Must be a string or a list of text parts.")


class StreamOptions(serializers.Serializer):
    include_usage = StrictBoolean(required=False, default=False)


class ChatInput(serializers.Serializer):
    """The fields this endpoint uses or checks; other OpenAI fields are ignored."""

    model = serializers.CharField(max_length=100)
    messages = MessageInput(many=True, allow_empty=False, max_length=500)
    max_tokens = serializers.IntegerField(
        min_value=1, max_value=32_768, required=False, allow_null=True
    )
    max_completion_tokens = serializers.IntegerField(
        min_value=1, max_value=32_768, required=False, allow_null=True
    )
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False, allow_null=True)
    top_p = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    n = serializers.IntegerField(min_value=1, max_value=1, required=False, allow_null=True)
    stream = StrictBoolean(required=False, default=False)
    stream_options = StreamOptions(required=False, allow_null=True)
    user = serializers.CharField(max_length=256, required=False, allow_blank=True)
    seed = serializers.IntegerField(required=False, allow_null=True)
    presence_penalty = serializers.FloatField(
        min_value=-2, max_value=2, required=False, allow_null=True
    )
    frequency_penalty = serializers.FloatField(
        min_value=-2, max_value=2, required=False, allow_null=True
    )


def job_input(data: dict) -> dict:
    """The job input of a chat request: the messages, the last user message as
    ``prompt`` (for Cargos that take a prompt), and the sampling settings given."""
    messages = [
        {"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]}
        for m in data["messages"]
    ]
    prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    result: dict[str, Any] = {"messages": messages, "prompt": prompt}
    max_tokens = data.get("max_tokens") or data.get("max_completion_tokens")
    if max_tokens is not None:
        result["max_tokens"] = max_tokens
    if data.get("temperature") is not None:
        result["temperature"] = data["temperature"]
    return result


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


def _create(request: HttpRequest, user: Any, data: dict, body: Any) -> Job:
    def create(key: str | None) -> Job:
        return jobs.create_job(
            user=user, workload=data["model"], job_input=job_input(data), idempotency_key=key
        )

    key = request.headers.get("Idempotency-Key")
    if key is None:
        return create(None)
    # The stored answer is the job; a retry gets the same job's completion again.
    _, answer, _ = idempotency.run_once(
        user_id=user.pk,
        key=idempotency.check_key(key),
        scope=SCOPE,
        body=body,
        run=lambda: (201, {"job_id": str(create(key).pk)}),
    )
    return Job.objects.get(pk=answer["job_id"], user=user)


def submit(request: HttpRequest) -> Chat:
    drf = authorize(request, "POST")
    data = validated(ChatInput, drf.data)
    options = data.get("stream_options") or {}
    stream = data["stream"]
    user = drf.user
    slot = slots.acquire(user.pk) if stream else None
    try:
        job = _create(request, user, data, drf.data)
    except BaseException:
        if slot:
            slots.release_sync(user.pk, slot)
        raise
    return Chat(
        user_id=user.pk,
        job=job,
        model=data["model"],
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        max_tokens=data.get("max_tokens") or data.get("max_completion_tokens"),
        slot=slot,
    )


def openai_error(exc: APIException) -> JsonResponse:
    status = getattr(exc, "status_code", 500)
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return error_response(exc, allow="POST", type=kind)


# --- the answer ----------------------------------------------------------------------------
def _island_of(job_id: Any) -> dict | None:
    row = Job.objects.filter(pk=job_id).values("island_id").first()
    island_id = row and row["island_id"]
    if not island_id:
        return None
    name = Island.objects.filter(pk=island_id).values_list("name", flat=True).first()
    return {"id": str(island_id), "name": name or ""}


class Answer:
    """What a job produced, gathered from its events."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.chunks = 0
        self.state = ""
        self.usage: dict | None = None
        self.error: str | None = None

    def take(self, event: dict) -> None:
        kind = event["type"]
        if kind == "token":
            self.chunks += 1
        elif kind == "status":
            self.state = str(event.get("state", ""))
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


async def _complete(chat: Chat) -> JsonResponse:
    answer, content = Answer(chat), []
    async for batch in job_events(chat.job):
        for event in batch:
            answer.take(event)
            if event["type"] == "token":
                content.append(event["content"])
    if answer.error is not None or answer.usage is None:
        status, body = answer.failure()
        # The job ran and failed: submitting it again is the caller's decision.
        return JsonResponse(body, status=status, headers={"x-should-retry": "false"})
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
        "island": await db(_island_of, chat.job.pk),  # extension
    }
    return JsonResponse(body)


def _data(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def _chunks(chat: Chat) -> Any:
    """``chat.completion.chunk`` events: the role, each token, the finish reason (and the
    usage when asked), then ``data: [DONE]``."""
    head, answer = _head(chat, "chat.completion.chunk"), Answer(chat)
    extra = {"usage": None} if chat.include_usage else {}

    def chunk(delta: dict, finish: str | None = None, **more: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _data({**head, "choices": [choice], **extra, **more})

    yield chunk({"role": "assistant", "content": ""})
    async for batch in job_events(chat.job):
        if not batch:
            yield KEEP_ALIVE
            continue
        out = []
        for event in batch:
            answer.take(event)
            if event["type"] == "token":
                out.append(chunk({"content": event["content"]}))
            elif event["type"] == "done":
                island = await db(_island_of, chat.job.pk)
                out.append(chunk({}, answer.finish_reason(), island=island))
                if chat.include_usage:
                    out.append(_data({**head, "choices": [], "usage": answer.usage_out()}))
            elif event["type"] == "error":
                out.append(_data(answer.failure()[1]))
        yield b"".join(out)
    yield b"data: [DONE]\n\n"


@csrf_exempt  # a session POST is CSRF-checked by the API's session authentication
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    try:
        chat = await db(submit, request)
    except APIException as exc:
        return openai_error(exc)
    if not chat.stream:
        return await _complete(chat)
    assert chat.slot is not None
    return sse_response(held(chat.user_id, chat.slot, _chunks(chat)))
