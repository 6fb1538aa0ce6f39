"""Shared pieces of the API views: strict input serializers, pagination, public views."""

import re
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView

from core.errors import ApiError
from portal.models import User


class InputSerializer(serializers.Serializer):
    """Rejects fields it does not declare, so a typo never passes silently, and values of
    another type than the field's: text is a string (DRF would turn ``0`` into ``"0"``),
    an integer a JSON integer or its decimal digits (DRF would take ``"0.0"``)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
            if wrong := {name: [message] for name, message in self._mistyped(data)}:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)

    def _mistyped(self, data: dict) -> Any:
        for name, value in data.items():
            field = self.fields[name]
            if value is None:
                continue
            if isinstance(field, serializers.CharField) and not isinstance(value, str):
                yield name, "Not a valid string."
            elif isinstance(field, serializers.IntegerField) and not (
                (isinstance(value, int) and not isinstance(value, bool))
                or (isinstance(value, str) and _INTEGER.fullmatch(value))
            ):
                yield name, "A valid integer is required."


_INTEGER = re.compile(r"-?[0-9]+")


def query(request: Request, names: Any = None) -> dict[str, str]:
    """The query parameters (those of ``names`` when given), each given once: a repeated
    one is a 422, whatever its values (the rule the API document states)."""
    params = request.query_params
    repeated = sorted(
        k for k in params if len(params.getlist(k)) > 1 and (names is None or k in names)
    )
    if repeated:
        raise serializers.ValidationError({k: ["Given more than once."] for k in repeated})
    return {k: str(params[k]) for k in params if names is None or k in names}


# Past any list this API returns, and within the database's OFFSET (a 64-bit integer).
MAX_OFFSET = 1_000_000_000


class PageSerializer(InputSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
    offset = serializers.IntegerField(min_value=0, max_value=MAX_OFFSET, default=0)


class SignedRequest(Request):
    """For type checkers: the request of a view that requires an account (the API's
    default permission), whose user is never anonymous."""

    user: User  # type: ignore[assignment]


class PublicView(APIView):
    """No authentication; limited per IP."""

    authentication_classes: list = []
    permission_classes = [AllowAny]


def page_schema(summary: str, responses: Any, *, parameters: tuple = (), **schema: Any) -> Any:
    """``extend_schema`` for a view method that answers with ``paginate``: its ``limit``
    and ``offset`` parameters after any of its own."""
    return extend_schema(
        summary=summary, parameters=[*parameters, PageSerializer], responses=responses, **schema
    )


def paginate(
    request: Request, queryset: QuerySet, present, params: type[PageSerializer] = PageSerializer
) -> dict:
    """``{"data": [...], "meta": {total, limit, offset}}`` for ``?limit=&offset=``."""
    page = validated(params, query(request, ("limit", "offset")))
    limit, offset = page["limit"], page["offset"]
    total = queryset.count()
    rows = [present(row) for row in queryset[offset : offset + limit]]
    return {"data": rows, "meta": {"total": total, "limit": limit, "offset": offset}}


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict:
    """The serializer's validated data, or its 422. A serializer on a hot path may have a
    ``quick(data)`` that returns the same data for the usual input without building the
    serializer (it costs a tenth of a millisecond and more), or None to leave it to it."""
    quick = getattr(serializer_class, "quick", None)
    if quick is not None and (fields := quick(data)) is not None:
        return fields
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def plain_text(value: Any, max_length: int) -> bool:
    """Whether a DRF ``CharField`` would take ``value`` unchanged: a non-blank string
    within ``max_length``, without surrounding whitespace (it trims) or NUL."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= max_length
        and value == value.strip()
        and "\x00" not in value
    )


def plain_int(value: Any, low: int, high: int) -> bool:
    """Whether a DRF ``IntegerField`` would take ``value`` unchanged."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


__all__ = ["ApiError", "InputSerializer", "PublicView", "paginate", "validated"]
