"""The limits of a chat request, one of each: the API's validation (compute.openai_input),
its OpenAPI description (compute.api_schema) and the chat Cargos' input schema
(compute.seed) all read them here."""

ROLES = ["system", "developer", "user", "assistant", "tool"]
MAX_MESSAGES = 500
MAX_TOKENS = 32_768
MAX_NAME = 100  # a model's slug, a message's name
