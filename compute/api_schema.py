"""The shapes of the compute API's answers, for the OpenAPI document only (the views
write them with the ``present_*`` functions of compute.api and compute.jobs_api;
tests/portal/test_api_schema_answers.py checks real answers against these), and the two
endpoints that are plain async Django views."""

from typing import Any

from rest_framework import serializers

from compute import chat
from compute.models import Cargo, Island, Job
from portal.api.schema import NOT_ONLY_SPACES, nullable, number
from portal.api.serializers import PageMeta, envelope


class Usage(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    total_tokens = serializers.IntegerField(allow_null=True)
    credits_used = serializers.FloatField(help_text="0 until the job is settled.")
    milliseconds = serializers.IntegerField(
        required=False, help_text="Extension: what an ONNX job took on its Island."
    )
    pixels = serializers.IntegerField(
        required=False, help_text="Extension: the pixels of the image an ONNX job read."
    )


class QueueOut(serializers.Serializer):
    """Why a waiting job (pending or queued) waits, and when it gives up."""

    reason = serializers.ChoiceField(choices=Job.QueueReason.choices, allow_null=True)
    message = serializers.CharField()
    timeout_seconds = serializers.IntegerField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class JobOut(serializers.Serializer):
    id = serializers.UUIDField()
    workload_id = serializers.IntegerField()
    workload_slug = serializers.CharField()
    status = serializers.ChoiceField(choices=Job.Status.choices)
    priority = serializers.IntegerField()
    input = serializers.JSONField()
    output = serializers.CharField(allow_blank=True)
    result = serializers.JSONField(
        allow_null=True,
        help_text="Extension: a Cargo's structured output besides its text; ocr-text: "
        "{width, height, lines: [{text, confidence, box: [[x, y] x 4]}]}.",
    )
    usage = Usage()
    island_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    queue = QueueOut(
        allow_null=True,
        help_text="Extension. While the job waits for an Island: why (no online Island can "
        "run its Cargo, those that can ask more than its budget, or all are busy) and when "
        "it gives up (status timeout, hold released); null once it left the queue.",
    )


JobResponse = envelope("JobResponse", JobOut())


JobListResponse = envelope("JobListResponse", JobOut(many=True), meta=PageMeta())


class JobOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Job.Status.choices)
    output = serializers.CharField(allow_blank=True)
    images = serializers.ListField(child=serializers.JSONField())
    result = serializers.JSONField(allow_null=True)


JobOutputResponse = envelope("JobOutputResponse", JobOutput())


class CargoOut(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    category = serializers.ChoiceField(choices=Cargo.Category.choices)
    runtime_type = serializers.ChoiceField(choices=Cargo.Runtime.choices)
    onnx_task_type = serializers.CharField(allow_null=True)
    price_per_job = serializers.FloatField()
    required_vram_mb = serializers.IntegerField()
    required_ram_mb = serializers.IntegerField()


class CargoListResponse(serializers.Serializer):
    cargos = CargoOut(many=True)
    count = serializers.IntegerField()


class WorkloadOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    category = serializers.ChoiceField(choices=Cargo.Category.choices)
    runtime_type = serializers.ChoiceField(choices=Cargo.Runtime.choices)
    required_vram_mb = serializers.IntegerField()
    required_ram_mb = serializers.IntegerField()
    price_per_job = serializers.FloatField()
    time_limit_seconds = serializers.IntegerField()
    input_schema = serializers.JSONField(allow_null=True)
    is_enabled = serializers.BooleanField()


WorkloadResponse = envelope("WorkloadResponse", WorkloadOut())


WorkloadListResponse = envelope("WorkloadListResponse", WorkloadOut(many=True), meta=PageMeta())


class HostOut(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=Island.Status.choices)
    region = serializers.CharField(allow_blank=True)
    capabilities = serializers.DictField()
    karma_score = serializers.IntegerField()
    last_heartbeat_at = serializers.DateTimeField(allow_null=True)


HostResponse = envelope("HostResponse", HostOut())


HostListResponse = envelope("HostListResponse", HostOut(many=True), meta=PageMeta())


class KarmaOut(serializers.Serializer):
    host_id = serializers.UUIDField()
    karma_score = serializers.IntegerField()
    pending_minutes = serializers.IntegerField()
    minutes_per_karma = serializers.IntegerField()
    monetization_threshold = serializers.IntegerField()
    monetization_unlocked = serializers.BooleanField()
    jobs_completed = serializers.IntegerField()
    jobs_failed = serializers.IntegerField()


KarmaResponse = envelope("KarmaResponse", KarmaOut())


class KarmaEventOut(serializers.Serializer):
    id = serializers.IntegerField()
    delta = serializers.IntegerField()
    minutes = serializers.IntegerField()
    reason = serializers.CharField()
    karma_after = serializers.IntegerField()
    pending_minutes_after = serializers.IntegerField()
    created_at = serializers.DateTimeField()


KarmaHistoryResponse = envelope("KarmaHistoryResponse", KarmaEventOut(many=True), meta=PageMeta())


# compute.openai_input.ChatInput: OpenAI's fields that /chat/completions uses or checks;
# other fields are accepted and ignored.
CHAT_INPUT = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {
            "type": "string",
            "minLength": 1,
            "maxLength": chat.MAX_NAME,
            "pattern": NOT_ONLY_SPACES,
            "description": "A Cargo slug",
        },
        "messages": chat.messages_schema(
            role={"enum": chat.ROLES},
            content={
                "nullable": True,
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type", "text"],
                            "properties": {
                                "type": {"enum": ["text"]},
                                "text": {"type": "string"},
                            },
                        },
                    },
                ],
            },
            name={
                "type": "string",
                "minLength": 1,
                "maxLength": chat.MAX_NAME,
                "pattern": NOT_ONLY_SPACES,
            },
        ),
        "max_tokens": number(1, chat.MAX_TOKENS, "integer"),
        "max_completion_tokens": number(1, chat.MAX_TOKENS, "integer"),
        "temperature": number(*chat.TEMPERATURE),
        "top_p": number(*chat.TOP_P),
        "n": number(1, 1, "integer"),
        "stream": {"type": "boolean", "default": False},
        "stream_options": nullable(
            {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}
        ),
        "user": {"type": "string", "maxLength": chat.MAX_USER},
        "seed": number(chat.SEED_MIN, chat.SEED_MAX, "integer"),
        "presence_penalty": number(*chat.PENALTY),
        "frequency_penalty": number(*chat.PENALTY),
    },
}

# Each server-sent event: its name and its data (JSON text; OpenAI's chunks end with a
# data of ``[DONE]``).
SSE = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
        }
    }
}

# The two endpoints that are plain async Django views (compute.openai_api, streaming).
PATHS = {
    "/api/v1/chat/completions": {
        "post": {
            "operationId": "chat_completions_create",
            "summary": "OpenAI-compatible chat: a chat.completion, or with stream true its "
            "chat.completion.chunk events and a final data: [DONE]",
            "description": "A job that waits for an Island: with stream true, chunks with an "
            'empty content delta carry the extension `status {state: "queued", reason, '
            "message, timeout_seconds, expires_at}` (as the job stream's status events; one "
            "more when the wait ends); without, the answer waits. A wait past the "
            "coordinator's JOB_QUEUE_TIMEOUT_SECONDS ends with a 504 `job_timeout` error "
            "whose message says why (in a stream: an error chunk).",
            "tags": ["chat"],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CHAT_INPUT}},
            },
            "responses": {
                "200": {
                    "description": "The completion (JSON), or its chunks (server-sent events)",
                    "content": {"application/json": {"schema": {"type": "object"}}, **SSE},
                },
                "4XX": {
                    "description": "An error in the one shape, with OpenAI's error `type`",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
            "security": [{"apiKey": []}, {"cookieAuth": []}],
        }
    },
    "/api/v1/jobs/{job_id}/stream": {
        "get": {
            "operationId": "jobs_stream",
            "summary": "A job's events as server-sent events (token, progress, status, image, "
            "done, error): what was produced so far, then live; ends after done or error",
            "description": "A job that waits for an Island starts with `status {state: "
            '"queued", reason, message, timeout_seconds, expires_at}` (reason: `no_island`, '
            "`over_budget` or `busy`, the `queue` of the job's answer) and gets another "
            "such event when the reason changes (after a requeue with `cause`: what took "
            "it back from its Island). A wait past its limit ends with `status {state: "
            '"timeout"}` and an `error` that says why.',
            "tags": ["jobs"],
            "parameters": [
                {
                    "name": "job_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
            ],
            "responses": {"200": {"description": "The job's events", "content": SSE}},
            "security": [{"apiKey": []}, {"cookieAuth": []}],
        }
    },
}


def add_plain_view_paths(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """A drf-spectacular postprocessing hook: :data:`PATHS`."""
    result.setdefault("paths", {}).update(PATHS)
    return result
