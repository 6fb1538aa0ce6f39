"""What ``POST /api/v1/chat/completions`` accepts (compute.openai_api): OpenAI's request
fields this endpoint uses or checks (unknown ones are accepted and ignored, known ones
type-checked), and the job input made of them."""

from typing import Any

from rest_framework import serializers

from compute import chat
from portal.api.base import plain_int, plain_text


class StrictBoolean(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class MessageInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=chat.ROLES)
    content = serializers.JSONField(allow_null=True)
    name = serializers.CharField(max_length=chat.MAX_NAME, required=False)

    def validate_content(self, value: Any) -> str:
        """A string, or OpenAI's list of ``{"type": "text", "text"}`` parts."""
        if value is None:
            return ""
        if isinstance(value, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in value
        ):
            value = "".join(p["text"] for p in value)
        if not isinstance(value, str):
            raise serializers.ValidationError("Must be a string or a list of text parts.")
        if "\x00" in value:  # as every text field of the API (the database refuses it)
            raise serializers.ValidationError("Null characters are not allowed.")
        return value


class StreamOptions(serializers.Serializer):
    include_usage = StrictBoolean(required=False, default=False)


class ChatInput(serializers.Serializer):
    """The fields this endpoint uses or checks; other OpenAI fields are ignored."""

    model = serializers.CharField(max_length=chat.MAX_NAME)
    messages = MessageInput(many=True, allow_empty=False, max_length=chat.MAX_MESSAGES)  # type: ignore[call-arg]
    max_tokens = serializers.IntegerField(
        min_value=1, max_value=chat.MAX_TOKENS, required=False, allow_null=True
    )
    max_completion_tokens = serializers.IntegerField(
        min_value=1, max_value=chat.MAX_TOKENS, required=False, allow_null=True
    )
    temperature = serializers.FloatField(
        min_value=chat.TEMPERATURE[0],
        max_value=chat.TEMPERATURE[1],
        required=False,
        allow_null=True,
    )
    top_p = serializers.FloatField(
        min_value=chat.TOP_P[0], max_value=chat.TOP_P[1], required=False, allow_null=True
    )
    n = serializers.IntegerField(min_value=1, max_value=1, required=False, allow_null=True)
    stream = StrictBoolean(required=False, default=False)
    stream_options = StreamOptions(required=False, allow_null=True)
    user = serializers.CharField(max_length=chat.MAX_USER, required=False, allow_blank=True)
    seed = serializers.IntegerField(
        min_value=chat.SEED_MIN, max_value=chat.SEED_MAX, required=False, allow_null=True
    )
    presence_penalty = serializers.FloatField(
        min_value=chat.PENALTY[0], max_value=chat.PENALTY[1], required=False, allow_null=True
    )
    frequency_penalty = serializers.FloatField(
        min_value=chat.PENALTY[0], max_value=chat.PENALTY[1], required=False, allow_null=True
    )

    @staticmethod
    def quick(data: Any) -> dict | None:
        """The validated data of a usual request (portal.api.base.validated): the fields
        below with plain values; anything else is the serializer's."""
        if not isinstance(data, dict) or data.keys() & _SERIALIZER_ONLY:
            return None
        fields: dict[str, Any] = {"model": data.get("model"), "stream": data.get("stream", False)}
        messages = data.get("messages")
        if (
            not plain_text(fields["model"], chat.MAX_NAME)
            or not isinstance(fields["stream"], bool)
            or not isinstance(messages, list)
            or not 0 < len(messages) <= chat.MAX_MESSAGES
        ):
            return None
        fields["messages"] = []
        for message in messages:
            if not isinstance(message, dict) or "name" in message:
                return None
            role, content = message.get("role"), message.get("content")
            if role not in chat.ROLES or not (content is None or isinstance(content, str)):
                return None
            if content and "\x00" in content:  # the serializer's error
                return None
            fields["messages"].append({"role": role, "content": content or ""})
        for name, low, high in (
            ("max_tokens", 1, chat.MAX_TOKENS),
            ("max_completion_tokens", 1, chat.MAX_TOKENS),
        ):
            if name in data:
                if data[name] is not None and not plain_int(data[name], low, high):
                    return None
                fields[name] = data[name]
        if "temperature" in data:
            value = data["temperature"]
            if value is not None and not (
                plain_int(value, *chat.TEMPERATURE) or _between(value, *chat.TEMPERATURE)
            ):
                return None
            fields["temperature"] = None if value is None else float(value)
        if "stream_options" in data:
            options = data["stream_options"]
            if options is not None:
                usage = options.get("include_usage", False) if isinstance(options, dict) else None
                if not isinstance(usage, bool):
                    return None
                options = {"include_usage": usage}
            fields["stream_options"] = options
        return fields


# Fields left to the serializer when present (rarely sent; their rules are its own).
_SERIALIZER_ONLY = frozenset({"top_p", "n", "user", "seed", "presence_penalty",
                              "frequency_penalty"})  # fmt: skip


def _between(value: Any, low: float, high: float) -> bool:
    return isinstance(value, float) and low <= value <= high


def job_input(data: dict) -> dict:
    """The job input of a chat request: the messages, the last user message as
    ``prompt`` (for Cargos that take a prompt), and the sampling settings given."""
    messages = [
        {"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]}
        for m in data["messages"]
    ]
    prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    result: dict[str, Any] = {"messages": messages, "prompt": prompt}
    max_tokens = data.get("max_tokens") or data.get("max_completion_tokens")
    if max_tokens is not None:
        result["max_tokens"] = max_tokens
    if data.get("temperature") is not None:
        result["temperature"] = data["temperature"]
    return result
