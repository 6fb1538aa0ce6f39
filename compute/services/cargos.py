"""Cargo input validation: a Cargo may declare a JSON Schema for its job input."""

import functools
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from compute.models import Cargo
from compute.services import images
from core.errors import ApiError

MAX_ERRORS = 20


@functools.lru_cache(maxsize=256)
def _validator(schema: bytes) -> Draft202012Validator:
    """A validator per schema, built once (building one costs more than using it)."""
    return Draft202012Validator(orjson.loads(schema))


def _nul_at(value: Any, path: str) -> str | None:
    """Where the first NUL character of a JSON value is (in a string or a key), if any;
    without recursion (a JSON document may nest deeper than Python's stack)."""
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, dict):
            if any("\x00" in key for key in item):
                return where
            stack.extend((f"{where}.{key}", v) for key, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{where}.{i}", v) for i, v in reversed(list(enumerate(item))))
    return None


def check_schema(schema: Any) -> None:
    """Raise ``SchemaError`` when ``schema`` is not a valid JSON Schema (admin forms)."""
    if schema is not None:
        Draft202012Validator.check_schema(schema)


def validate_input(*, cargo: Cargo, job_input: Any) -> None:
    """Raise a 422 ``ApiError`` listing every violation of the Cargo's input schema."""
    if not isinstance(job_input, dict):
        raise ApiError(
            "input: must be a JSON object",
            code="validation_error",
            status_code=422,
            details={"input": ["Must be a JSON object."]},
        )
    if (path := _nul_at(job_input, "input")) is not None:  # the database cannot store one
        raise ApiError(
            f"{path}: null characters are not allowed",
            code="validation_error",
            status_code=422,
            details={path: ["Null characters are not allowed."]},
        )
    if not cargo.input_schema:
        return
    try:
        validator = _validator(orjson.dumps(cargo.input_schema, option=orjson.OPT_SORT_KEYS))
        errors = sorted(validator.iter_errors(job_input), key=lambda e: list(e.absolute_path))
    except SchemaError:  # pragma: no cover - the admin refuses invalid schemas
        return
    if not errors:
        images.check_images(cargo=cargo, job_input=job_input)
        return
    details: dict[str, list[str]] = {}
    for error in errors[:MAX_ERRORS]:
        path = ".".join(["input", *(str(p) for p in error.absolute_path)])
        details.setdefault(path, []).append(error.message)
    first_path, messages = next(iter(details.items()))
    raise ApiError(
        f"{first_path}: {messages[0]}",
        code="validation_error",
        status_code=422,
        details=details,
    )
