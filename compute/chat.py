"""The limits of a chat request, one of each: the API's validation (compute.openai_input:
the serializer and its quick path), its OpenAPI description (compute.api_schema) and the
chat Cargos' input schema (compute.seed) all read them here;
tests/compute/test_chat_request.py feeds the three the same boundary cases."""

ROLES = ["system", "developer", "user", "assistant", "tool"]
MAX_MESSAGES = 500
MAX_TOKENS = 32_768
MAX_NAME = 100  # a model's slug, a message's name
MAX_USER = 256  # OpenAI's end-user id
# (lowest, highest) of OpenAI's sampling settings.
TEMPERATURE = (0, 2)
TOP_P = (0, 1)
PENALTY = (-2, 2)  # presence_penalty, frequency_penalty
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
