import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from core.jsonread import loads
from portal.api.errors import RequestTooLarge
from portal.api.middleware import body_limit


class StrictJSONParser(BaseParser):
    """JSON bodies only, at most the route's limit (DATA_UPLOAD_MAX_MEMORY_SIZE bytes but
    for a job submission), and an object at the top. Not a DRF JSONParser: DRF would hand
    that one ``request.body``, which Django refuses past DATA_UPLOAD_MAX_MEMORY_SIZE
    whatever the route; this one reads the stream itself, up to the route's limit."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        limit = (
            body_limit(request.method, request.path)
            if request is not None
            else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        )
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge()
        if not body or body.isspace():  # not strip(): that could copy the whole body
            return {}
        try:
            data = loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Malformed JSON: {exc}", code="invalid_json") from exc
        if not isinstance(data, dict):
            raise ParseError("The request body must be a JSON object", code="invalid_json")
        return data
