"""The API layer's one error renderer (:func:`refusal`): the domain's
:class:`~core.errors.ApiError` and DRF's exceptions in the API's one shape,
``{"error": {"message", "code", ...}}``, for every door (DRF, the fast lane, Django's
async views)."""

import logging
from dataclasses import dataclass, field
from typing import Any

import redis
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from psycopg_pool import PoolTimeout
from rest_framework import exceptions, status
from rest_framework.response import Response

from core.errors import ApiError, error_body

logger = logging.getLogger(__name__)


# What a door (DRF view, fast lane, stream) catches and renders.
REFUSALS = (exceptions.APIException, ApiError)


# What a request meets while Postgres or Redis is away (restarting, unreachable, a dead
# pooled connection): the client is asked to come back rather than told the server broke.
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError, PoolTimeout, redis.RedisError)
RETRY_AFTER_SECONDS = 5


def unavailable(exc: BaseException) -> ApiError | None:
    """``exc`` as a 503 with ``Retry-After`` when a backing service is away, else None."""
    return service_away(exc) if isinstance(exc, UNAVAILABLE_ERRORS) else None


def service_away(exc: BaseException) -> ApiError:
    """The 503 with ``Retry-After`` that answers one of ``UNAVAILABLE_ERRORS``."""
    logger.warning("a backing service is unavailable: %s", exc)
    return ApiError(
        "Service temporarily unavailable, please retry",
        code="unavailable",
        status_code=503,
        retry_after=RETRY_AFTER_SECONDS,
    )


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict) and detail:
        field, value = next(iter(detail.items()))
        return f"{field}: {_first_message(value)}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail or "Invalid input")


def _named(detail: Any) -> Any:
    """``detail`` with every key a string: a list's errors come keyed by the items'
    positions (``{"messages": {0: {...}}}``), which JSON writes as ``"0"``."""
    if isinstance(detail, dict):
        return {str(key): _named(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_named(value) for value in detail]
    return detail


_CODES = {
    exceptions.NotAuthenticated: "unauthorized",
    exceptions.AuthenticationFailed: "unauthorized",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


_REFUSED: dict[type[Exception], str] = {TooManyFieldsSent: "too_many_fields"}


# OpenAI's error ``type`` by status (the ``openai`` package reads it): /chat/completions.
OPENAI_TYPES = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


@dataclass
class Refused:
    """A refusal as the client gets it: status, headers (Content-Type aside) and body."""

    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


def refusal(exc: BaseException, *, openai: bool = False, allow: str | None = None) -> Refused:
    """The API's one error renderer: ``exc`` in the one shape, with its headers
    (Retry-After, WWW-Authenticate; ``Allow`` for a 405 when given). ``openai``: with
    OpenAI's error ``type`` too (/chat/completions). Every door renders with it: DRF
    (:func:`exception_handler`), the fast lane (portal.api.lane) and Django's async
    views (:func:`json_response`)."""
    refused = _refused(exc)
    if openai:
        status = refused.status
        kind = OPENAI_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        refused.body = {"error": {**refused.body["error"], "type": kind}}
    if allow is not None and isinstance(exc, exceptions.MethodNotAllowed):
        refused.headers["Allow"] = allow
    return refused


class RequestTooLarge(exceptions.ParseError):
    """A body past its route's limit: the parser's refusal, and Django's own."""

    status_code = 413
    default_detail = "Request body is too large"
    default_code = "request_too_large"


def _refused(exc: BaseException) -> Refused:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, RequestDataTooBig):  # a 413, as the body guard's and the parser's
        exc = RequestTooLarge(str(exc))
    elif isinstance(exc, SuspiciousOperation):  # what Django refuses to parse: a 400
        exc = exceptions.ParseError(str(exc), code=_REFUSED.get(type(exc), "bad_request"))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    exc = unavailable(exc) or exc

    if isinstance(exc, ApiError):
        headers = {}
        if exc.status_code in (429, 503) and "retry_after" in exc.extra:  # quotas, outages
            headers["Retry-After"] = str(exc.extra["retry_after"])
        body = error_body(str(exc.detail), exc.code, **exc.extra)
        return Refused(exc.status_code, body, headers)
    if isinstance(exc, exceptions.ValidationError):
        details = _named(
            exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        )
        body = error_body(_first_message(details), "validation_error", details=details)
        return Refused(status.HTTP_422_UNPROCESSABLE_ENTITY, body)
    if isinstance(exc, exceptions.Throttled):
        retry_after = int(exc.wait or 1)  # type: ignore[attr-defined]
        body = error_body("Rate limit exceeded", "rate_limited", retry_after=retry_after)
        return Refused(429, body, {"Retry-After": str(retry_after)})
    if isinstance(exc, exceptions.ParseError):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "invalid_request"
        return Refused(exc.status_code, error_body(str(exc.detail), code))  # 400, 413
    if isinstance(exc, exceptions.APIException):
        code = _CODES.get(type(exc)) or next(
            (c for cls, c in _CODES.items() if isinstance(exc, cls)), "error"
        )
        headers = {}
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            headers["WWW-Authenticate"] = "Bearer"
        return Refused(exc.status_code, error_body(str(exc.detail), code), headers)

    logger.exception("Unhandled error in API view", exc_info=exc)
    return Refused(500, error_body("Internal server error", "server_error"))


def exception_handler(exc: Exception, context: dict) -> Response:
    """:func:`refusal` as DRF's exception handler."""
    refused = refusal(exc)
    return Response(refused.body, status=refused.status, headers=refused.headers)


def json_response(exc: BaseException, *, openai: bool = False, allow: str = "GET") -> JsonResponse:
    """:func:`refusal` as a Django response (the API's async views)."""
    refused = refusal(exc, openai=openai, allow=allow)
    response = JsonResponse(refused.body, status=refused.status)
    for name, value in refused.headers.items():
        response[name] = value
    return response
