"""The quick validation of usual job and chat requests (portal.api.base.validated): for
any input, the same validated data or the same error as the DRF serializer."""

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from compute.chat import ROLES
from compute.jobs_api import JobInput
from compute.openai_input import ChatInput
from portal.api.base import validated

ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 40_000), st.floats(-3, 3, allow_nan=False),
    st.sampled_from(["", " x", "x ", "llm-chat", "a\x00b", "0.5", "7", "x" * 120]),
    st.lists(st.integers(-9, 9), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(-9, 9), max_size=2),
)  # fmt: skip


# Mostly valid requests, one or two fields off: where the quick path and the serializer
# could part ways.
def usually(valid: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(valid, valid, ANY)


PARTS = st.just([{"type": "text", "text": "hi"}])
MESSAGE = st.fixed_dictionaries(
    {"role": usually(st.sampled_from(ROLES)),
     "content": st.one_of(usually(st.sampled_from(["Hi", None])), PARTS)},
    optional={"name": ANY, "extra": ANY},
)  # fmt: skip
JOB = st.fixed_dictionaries(
    {"workload": usually(st.just("llm-chat")), "input": usually(st.just({"prompt": "Hi"}))},
    optional={"priority": usually(st.integers(0, 100)), "region": usually(st.just("eu")),
              "bid": ANY, "colour": ANY},
)  # fmt: skip
CHAT = st.fixed_dictionaries(
    {"model": usually(st.just("llm-chat")), "messages": usually(st.lists(MESSAGE, max_size=3))},
    optional={
        "max_tokens": usually(st.integers(1, 32_768)), "max_completion_tokens": ANY,
        "temperature": usually(st.floats(0, 2)), "stream": usually(st.booleans()),
        "stream_options": st.one_of(ANY, st.fixed_dictionaries(
            {}, optional={"include_usage": usually(st.booleans()), "other": ANY})),
        "top_p": ANY, "seed": ANY, "logit_bias": ANY,
    },
)  # fmt: skip


def drf(serializer_class: type, data: Any) -> Any:
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return as_json(serializer.validated_data)
    return ("error", serializer.errors)


def ours(serializer_class: type, data: Any) -> Any:
    try:
        return as_json(validated(serializer_class, data))
    except ValidationError as exc:
        return ("error", exc.detail)


def as_json(fields: Any) -> bytes:
    """What the job gets of the fields: 1 and 1.0 are not the same JSON."""
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS, default=repr)  # a bid: Decimal


@settings(max_examples=500, deadline=None, derandomize=True)
@given(JOB)
def test_a_job_submission_validates_as_the_serializer_does(data):
    assert ours(JobInput, data) == drf(JobInput, data)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(CHAT)
def test_a_chat_request_validates_as_the_serializer_does(data):
    assert ours(ChatInput, data) == drf(ChatInput, data)


@pytest.mark.parametrize(
    ("serializer_class", "data"),
    [
        (JobInput, {"workload": "llm-chat", "input": {"prompt": "Hi"}, "priority": 7}),
        (ChatInput, {"model": "llm-chat", "messages": [{"role": "user", "content": "Hi"}],
                     "max_tokens": 8, "temperature": 1, "stream": True,
                     "stream_options": {"include_usage": True}}),
    ],
)  # fmt: skip
def test_the_usual_request_never_builds_the_serializer(serializer_class, data, monkeypatch):
    expected = drf(serializer_class, data)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the serializer was built")

    monkeypatch.setattr(serializer_class, "__init__", refuse)
    assert as_json(validated(serializer_class, data)) == expected
