"""OpenAPI additions: what the validation refuses (:class:`Schema`), the one error shape
documented once for every operation, and the two endpoints that are not DRF views."""

from typing import Any

from drf_spectacular.drainage import has_override
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance
from drf_spectacular.types import OpenApiTypes
from rest_framework import serializers
from rest_framework.generics import GenericAPIView

from compute.openai_input import ROLES
from portal.api.base import InputSerializer

# Text with a character that is not a space to Python's strip() (which DRF trims), in
# both Python's and ECMAScript's regular expressions.
NOT_ONLY_SPACES = r"[^\s\x1c-\x1f\x85]"
# Any JSON value but null.
NOT_NULL = {"anyOf": [{"type": t} for t in ("object", "array", "string", "number", "boolean")]}


class Schema(AutoSchema):
    """What DRF's validation refuses, said in the schema where drf-spectacular leaves it
    out: undeclared fields of input serializers (InputSerializer), a null JSON value, an
    empty list or object where ``allow_empty`` is false, text of spaces only where blank
    is refused, a blank or signed decimal. An APIView that names no serializer for its
    answer answers a JSON object."""

    def _map_serializer_field(self, field: Any, direction: str, bypass_extensions: bool = False):
        result = super()._map_serializer_field(field, direction, bypass_extensions)
        if has_override(field, "field"):
            return result
        if isinstance(field, serializers.JSONField) and not field.allow_null:
            result = {**NOT_NULL, **{k: v for k, v in result.items() if k != "type"}}
        elif isinstance(field, serializers.DictField) and not field.allow_empty:
            result["minProperties"] = 1
        elif isinstance(field, serializers.ListField) and not field.allow_empty:
            result["minItems"] = max(1, result.get("minItems", 0))
        elif (
            type(field) is serializers.CharField
            and field.trim_whitespace
            and not field.allow_blank
            and "pattern" not in result
        ):
            result["pattern"] = NOT_ONLY_SPACES
        elif isinstance(field, serializers.DecimalField) and result.get("type") == "string":
            whole = (field.max_digits or 30) - (field.decimal_places or 0)
            sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
            places = rf"(?:\.\d{{1,{field.decimal_places}}})?" if field.decimal_places else ""
            result["pattern"] = rf"^{sign}\d{{1,{whole}}}{places}$"
        return result

    def get_response_serializers(self) -> Any:
        if not isinstance(self.view, GenericAPIView) and not hasattr(self.view, "serializer_class"):
            return OpenApiTypes.OBJECT
        return super().get_response_serializers()

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict:
        result = super()._map_basic_serializer(serializer, direction)
        if isinstance(force_instance(serializer), InputSerializer):
            result["additionalProperties"] = False
        return result


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "code"],
            "properties": {
                "message": {"type": "string"},
                "code": {"type": "string", "example": "validation_error"},
                "details": {
                    "type": "object",
                    "description": "On 422: the messages of each invalid field (of a field "
                    "that is an object: the same, for each of its fields).",
                    "additionalProperties": {
                        "oneOf": [
                            {"type": "array", "items": {"type": "string"}},
                            {"type": "object"},
                        ]
                    },
                },
                "retry_after": {
                    "type": "integer",
                    "description": "On 429: seconds until the limit resets (also `Retry-After`).",
                },
            },
        }
    },
}

ERROR_RESPONSE = {
    "description": "An error: 400 malformed, 401 no valid key, 403 missing scope, "
    "404 not found, 405 method not allowed, 422 invalid fields, 429 rate limited",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _nullable(schema: dict) -> dict:
    return {**schema, "nullable": True}


def _number(low: float, high: float, kind: str = "number") -> dict:
    return _nullable({"type": kind, "minimum": low, "maximum": high})


# compute.openai_input.ChatInput: OpenAI's fields that /chat/completions uses or checks;
# other fields are accepted and ignored.
CHAT_INPUT = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "pattern": NOT_ONLY_SPACES,
            "description": "A Cargo slug",
        },
        "messages": {
            "type": "array",
            "minItems": 1,
            "maxItems": 500,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"enum": ROLES},
                    "content": {
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
                    "name": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 100,
                        "pattern": NOT_ONLY_SPACES,
                    },
                },
            },
        },
        "max_tokens": _number(1, 32_768, "integer"),
        "max_completion_tokens": _number(1, 32_768, "integer"),
        "temperature": _number(0, 2),
        "top_p": _number(0, 1),
        "n": _number(1, 1, "integer"),
        "stream": {"type": "boolean", "default": False},
        "stream_options": _nullable(
            {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}
        ),
        "user": {"type": "string", "maxLength": 256},
        "seed": _nullable({"type": "integer"}),
        "presence_penalty": _number(-2, 2),
        "frequency_penalty": _number(-2, 2),
    },
}

SSE = {"text/event-stream": {"schema": {"type": "string"}}}

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


def add_error_responses(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """A drf-spectacular postprocessing hook (with the paths that are not DRF views)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    result.setdefault("paths", {}).update(PATHS)
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("4XX", ERROR_RESPONSE)
    return result
