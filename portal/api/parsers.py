import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class RequestTooLarge(ParseError):
    default_detail = "Request body is too large"
    default_code = "request_too_large"


class StrictJSONParser(JSONParser):
    """JSON bodies only, at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes, and an object at the top."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge()
        if not body.strip():
            return {}
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Malformed JSON: {exc}", code="invalid_json") from exc
        if not isinstance(data, dict):
            raise ParseError("The request body must be a JSON object", code="invalid_json")
        return data
