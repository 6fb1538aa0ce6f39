"""The chat request is described once (compute.chat's limits) and read four ways: the
serializer, its quick path, the OpenAPI document's request body and the chat Cargos'
input schema. Fed the same boundary cases (at each limit, one past it, a wrong type),
they take and refuse the same requests, for the same field. (Left out: what DRF's fields
coerce, a ``model`` of 5 read as "5" or a ``max_tokens`` of "8" as 8, which the
document does not promise.)"""

from typing import Any

import jsonschema
import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.exceptions import ValidationError

from compute import chat
from compute.openai_input import ChatInput, job_input
from compute.seed import CHAT_INPUT as CARGO_INPUT
from portal.api.base import validated

HI = {"role": "user", "content": "Hi"}
BASE = {"model": "llm-chat", "messages": [HI]}


def message(**fields: Any) -> dict:
    return {"model": "llm-chat", "messages": [{**HI, **fields}]}


TAKEN = [
    {**BASE, "messages": [HI] * chat.MAX_MESSAGES},
    {**BASE, "model": "m" * chat.MAX_NAME},
    {**BASE, "max_tokens": chat.MAX_TOKENS},
    {**BASE, "max_tokens": 1},
    {**BASE, "max_tokens": None},
    {**BASE, "max_completion_tokens": chat.MAX_TOKENS},
    {**BASE, "temperature": chat.TEMPERATURE[0]},
    {**BASE, "temperature": float(chat.TEMPERATURE[1])},
    {**BASE, "temperature": None},
    {**BASE, "top_p": chat.TOP_P[1]},
    {**BASE, "n": 1},
    {**BASE, "presence_penalty": chat.PENALTY[0]},
    {**BASE, "frequency_penalty": chat.PENALTY[1]},
    {**BASE, "user": "u" * chat.MAX_USER},
    {**BASE, "user": ""},
    {**BASE, "seed": chat.SEED_MIN},
    {**BASE, "seed": chat.SEED_MAX},
    {**BASE, "stream": True},
    {**BASE, "stream": True, "stream_options": {"include_usage": True}},
    {**BASE, "stream_options": None},
    {**BASE, "logit_bias": {"1": 2}},  # an OpenAI field this endpoint ignores
    message(name="n" * chat.MAX_NAME),
    message(content=None),
    message(content=[{"type": "text", "text": "Hi"}]),
    *(message(role=role) for role in chat.ROLES),
]

# (request, the field refused)
REFUSED = [
    ({**BASE, "messages": [HI] * (chat.MAX_MESSAGES + 1)}, "messages"),
    ({**BASE, "messages": []}, "messages"),
    ({**BASE, "messages": "Hi"}, "messages"),
    ({"model": "llm-chat"}, "messages"),
    ({"messages": [HI]}, "model"),
    ({**BASE, "model": "m" * (chat.MAX_NAME + 1)}, "model"),
    ({**BASE, "model": ""}, "model"),
    ({**BASE, "model": None}, "model"),
    ({**BASE, "max_tokens": chat.MAX_TOKENS + 1}, "max_tokens"),
    ({**BASE, "max_tokens": 0}, "max_tokens"),
    ({**BASE, "max_tokens": "many"}, "max_tokens"),
    ({**BASE, "max_tokens": True}, "max_tokens"),
    ({**BASE, "max_tokens": 1.5}, "max_tokens"),
    ({**BASE, "max_completion_tokens": chat.MAX_TOKENS + 1}, "max_completion_tokens"),
    ({**BASE, "temperature": chat.TEMPERATURE[1] + 0.01}, "temperature"),
    ({**BASE, "temperature": chat.TEMPERATURE[0] - 0.01}, "temperature"),
    ({**BASE, "temperature": "hot"}, "temperature"),
    ({**BASE, "top_p": chat.TOP_P[1] + 0.01}, "top_p"),
    ({**BASE, "n": 2}, "n"),
    ({**BASE, "presence_penalty": chat.PENALTY[0] - 0.01}, "presence_penalty"),
    ({**BASE, "frequency_penalty": chat.PENALTY[1] + 0.01}, "frequency_penalty"),
    ({**BASE, "user": "u" * (chat.MAX_USER + 1)}, "user"),
    ({**BASE, "seed": chat.SEED_MAX + 1}, "seed"),
    ({**BASE, "seed": chat.SEED_MIN - 1}, "seed"),
    ({**BASE, "stream": "yes"}, "stream"),
    ({**BASE, "stream": 1}, "stream"),
    ({**BASE, "stream_options": {"include_usage": "yes"}}, "stream_options"),
    ({**BASE, "stream_options": "usage"}, "stream_options"),
    (message(role="robot"), "messages"),
    (message(content=5), "messages"),
    (message(content=[{"type": "image_url"}]), "messages"),
    (message(name="n" * (chat.MAX_NAME + 1)), "messages"),
    ({**BASE, "messages": ["Hi"]}, "messages"),
]


@pytest.fixture(scope="module")
def documented() -> jsonschema.Draft7Validator:
    """The request body of /chat/completions in the OpenAPI document, as JSON Schema."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    operation = document["paths"]["/api/v1/chat/completions"]["post"]
    schema = json_schema(operation["requestBody"]["content"]["application/json"]["schema"])
    return jsonschema.Draft7Validator(schema)


def json_schema(openapi: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` in JSON Schema's terms."""
    if isinstance(openapi, list):
        return [json_schema(item) for item in openapi]
    if not isinstance(openapi, dict):
        return openapi
    schema = {name: json_schema(value) for name, value in openapi.items() if name != "nullable"}
    return {"anyOf": [{"type": "null"}, schema]} if openapi.get("nullable") else schema


def serializer_says(data: dict) -> set[str]:
    serializer = ChatInput(data=data)
    return set() if serializer.is_valid() else set(serializer.errors)


def validated_says(data: dict) -> set[str]:
    """What the view calls: the quick path, or the serializer when it steps aside."""
    try:
        validated(ChatInput, data)
    except ValidationError as exc:
        return set(exc.detail)
    return set()


def document_says(validator: jsonschema.Draft7Validator, data: dict) -> set[str]:
    return {str(error.absolute_path[0]) if error.absolute_path else _missing(error)
            for error in validator.iter_errors(data)}  # fmt: skip


def _missing(error: jsonschema.ValidationError) -> str:
    assert error.validator == "required", error
    return error.message.split("'")[1]


@pytest.mark.parametrize("data", TAKEN, ids=range(len(TAKEN)))
def test_a_request_at_the_limits_is_taken_by_every_reader(data, documented):
    assert serializer_says(data) == set()
    assert validated_says(data) == set()
    assert document_says(documented, data) == set()
    jsonschema.validate(job_input(validated(ChatInput, data)), CARGO_INPUT)


@pytest.mark.parametrize(("data", "field"), REFUSED, ids=[f for _, f in REFUSED])
def test_a_request_past_a_limit_is_refused_by_every_reader_for_the_same_field(
    data, field, documented
):
    assert serializer_says(data) == {field}
    assert validated_says(data) == {field}
    assert document_says(documented, data) == {field}
