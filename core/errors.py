"""The domain's one refusal and the one error shape of the public API:
``{"error": {"message", "code", ...}}``.

Services raise :class:`ApiError`; the API layer (portal.api.errors) renders it, with
DRF's own exceptions, in that shape. Nothing here knows of HTTP frameworks.
"""

from typing import Any


class ApiError(Exception):
    """Raise with a status and a stable machine-readable code."""

    def __init__(self, message: str, *, code: str, status_code: int = 400, **extra: Any):
        super().__init__(message)
        self.detail = message
        self.status_code = status_code
        self.code = code
        self.extra = extra


def error_body(message: str, code: str, **extra: Any) -> dict:
    return {"error": {"message": message, "code": code, **extra}}
