"""Images in job inputs, checked at submission: a property of a Cargo's input schema
with ``"contentEncoding": "base64"`` and an ``image/*`` ``contentMediaType`` must hold a
PNG, JPEG or WebP (by its first bytes, then its header as Pillow reads it) of at most
JOB_IMAGE_MAX_BYTES bytes and JOB_IMAGE_MAX_PIXELS pixels. Only the header is read: an
image whose body is damaged fails on the Island, with the decoder's error, its hold
released."""

import base64
import binascii
import io
from typing import Any, NoReturn

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from compute.models import Cargo
from core.errors import ApiError

SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


def check_images(*, cargo: Cargo, job_input: dict[str, Any]) -> None:
    """Raise a 422 ``ApiError`` for the first image property that is not acceptable."""
    schema = cargo.input_schema if isinstance(cargo.input_schema, dict) else {}
    properties = schema.get("properties")
    for name, spec in (properties if isinstance(properties, dict) else {}).items():
        if _is_image(spec) and isinstance(job_input.get(name), str):
            check_image(f"input.{name}", job_input[name])


def _is_image(spec: Any) -> bool:
    return (
        isinstance(spec, dict)
        and spec.get("contentEncoding") == "base64"
        and str(spec.get("contentMediaType", "")).startswith("image/")
    )


def check_image(field: str, data: str) -> tuple[int, int]:
    """The image's width and height; a 422 ``invalid_image`` or ``image_too_large``."""
    limit = settings.JOB_IMAGE_MAX_BYTES
    if len(data) > (limit + 2) // 3 * 4:
        _refuse(field, f"is larger than {limit} bytes", "image_too_large")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        _refuse(field, "is not valid base64")
    kind = _kind(raw)
    if kind is None:
        _refuse(field, "must be a PNG, JPEG or WebP image")
    try:
        with Image.open(io.BytesIO(raw), formats=[kind]) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        _refuse(field, f"cannot be read as a {kind} image")
    if width * height > settings.JOB_IMAGE_MAX_PIXELS:
        _refuse(
            field,
            f"has {width}x{height} pixels, more than {settings.JOB_IMAGE_MAX_PIXELS}",
            "image_too_large",
        )
    return width, height


def _kind(raw: bytes) -> str | None:
    for signature, kind in SIGNATURES.items():
        if raw.startswith(signature):
            return kind
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "WEBP"
    return None


def _refuse(field: str, problem: str, code: str = "invalid_image") -> NoReturn:
    raise ApiError(
        f"{field}: {problem}", code=code, status_code=422, details={field: [f"Image {problem}."]}
    )
