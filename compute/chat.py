"""The limits of a chat request, one of each: the API's validation (compute.openai_input),
its OpenAPI description (compute.api_schema) and the chat Cargos' input schema
(compute.seed) all read them here."""

ROLES = ["system", "developer", "user", "assistant", "tool"]
MAX_MESSAGES = 500
MAX_TOKENS = 32_768
MAX_NAME = 100  # a model's slug, a message's name
# A 64-bit signed integer, as OpenAI's clients send it (and the JSON parser reads).
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1


def messages_schema(**properties: dict) -> dict:
    """The JSON schema of a chat's ``messages``: 1 to :data:`MAX_MESSAGES` objects with a
    ``role`` and a ``content`` of the given ``properties``."""
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_MESSAGES,
        "items": {"type": "object", "required": ["role", "content"], "properties": properties},
    }
