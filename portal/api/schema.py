"""OpenAPI additions: the one error shape, documented once for every operation."""

from typing import Any

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
                    "description": "On 422: the messages for each invalid field.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
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


def add_error_responses(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """A drf-spectacular postprocessing hook."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("4XX", ERROR_RESPONSE)
    return result
