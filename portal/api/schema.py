"""OpenAPI additions: what the validation refuses (:class:`Schema`), the one error shape
documented once for every operation, and the helpers of the apps' own fragments."""

from typing import Any

from drf_spectacular.drainage import has_override
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance
from drf_spectacular.types import OpenApiTypes
from rest_framework import serializers
from rest_framework.generics import GenericAPIView

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
                    "description": "On 429: seconds until the limit resets; on 503: seconds "
                    "before a retry is worth it (both also `Retry-After`).",
                },
            },
        }
    },
}

# Rules of every operation, said once in the document's description.
RULES = """Rules of every operation:

- **Errors** come in one shape, `{"error": {"message", "code", ...}}` (the `Error` schema).
- **Text** never holds a NUL character (U+0000), in any string of a request (fields, JSON
  inputs, chat messages, query parameters): a request with one is refused with 422.
- **Types are kept**: a text field takes a JSON string only (`{"name": 0}` is a 422), an
  integer field a JSON integer (or, in a query, its decimal digits: `offset=0.0` is a 422).
- **Query parameters** are each given at most once: a repeated one is a 422 whatever its
  values (`?offset=0&offset=0` too). A query of more than 1,000 parameters is a 400
  `too_many_fields` on every route.
- **Integers** in JSON bodies are 64-bit (from -2^63 to 2^64-1; fields may say narrower
  bounds): a larger one is read as a number with a fraction, a 422 where an integer is due.
"""

ERROR_RESPONSE = {
    "description": "An error: 400 malformed (or too many query parameters), 401 no valid "
    "key, 403 missing scope, 404 not found, 405 method not allowed, 422 invalid fields, "
    "429 rate limited, 503 a backing service is briefly unavailable (retry after "
    "`Retry-After` seconds)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def nullable(schema: dict) -> dict:
    return {**schema, "nullable": True}


def number(low: float, high: float, kind: str = "number") -> dict:
    return nullable({"type": kind, "minimum": low, "maximum": high})


def add_error_responses(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """A drf-spectacular postprocessing hook, after those that add the paths that are not
    DRF views (compute.api_schema.add_plain_view_paths)."""
    result.setdefault("info", {})["description"] = RULES
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("4XX", ERROR_RESPONSE)
    return result
