"""Images in job inputs, checked at submission: a property of a Cargo's input schema
with ``"contentEncoding": "base64"`` and an ``image/*`` ``contentMediaType`` must hold a
PNG, JPEG or WebP (by its first bytes, then its header as Pillow reads it) of at most
JOB_IMAGE_MAX_BYTES bytes and JOB_IMAGE_MAX_PIXELS pixels. Only the header is decoded
and read: an image whose body is damaged fails on the Island, with the decoder's error,
its hold released."""

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
    """The image's width and height; a 422 ``invalid_image`` or ``image_too_large``.
    The image is never decoded whole: the base64 is checked a slice at a time, and
    Pillow reads the header through :class:`Decoded`."""
    limit = settings.JOB_IMAGE_MAX_BYTES
    if len(data) > (limit + 2) // 3 * 4:  # too long whatever its padding: no more work
        _refuse(field, f"is larger than {limit} bytes", "image_too_large")
    if not _is_base64(data):
        _refuse(field, "is not valid base64")
    decoded = Decoded(data)
    if decoded.size > limit:
        _refuse(field, f"is larger than {limit} bytes", "image_too_large")
    image_file = io.BufferedReader(decoded)
    kind = _kind(image_file.read(12))
    if kind is None:
        _refuse(field, "must be a PNG, JPEG or WebP image")
    try:
        image_file.seek(0)
        with Image.open(image_file, formats=[kind]) as image:
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


def _is_base64(data: str) -> bool:
    """Whether ``data`` is base64 as ``b64decode(validate=True)`` takes it (the alphabet,
    padding at the end only), decoded a slice at a time and thrown away."""
    if not data.isascii() or len(data) % 4:
        return False
    try:
        for start in range(0, len(data), SLICE):
            binascii.a2b_base64(data[start : start + SLICE], strict_mode=True)
    except binascii.Error:
        return False
    return True


SLICE = 64 * 1024  # base64 characters decoded at a time (a multiple of 4)


class Decoded(io.RawIOBase):
    """The bytes of valid base64 as a file, decoded where they are read: Pillow reads an
    image's header (its first bytes, or a JPEG's markers up to its frame) and no more."""

    def __init__(self, data: str) -> None:
        self.data, self.pos = data, 0
        padding = 2 if data.endswith("==") else 1 if data.endswith("=") else 0
        self.size = len(data) // 4 * 3 - padding

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        start, end = self.pos, min(self.pos + len(buffer), self.size)
        if start >= end:
            return 0
        first = start // 3  # the 3-byte group of ``start``: 4 characters each
        chunk = binascii.a2b_base64(self.data[first * 4 : -(-end // 3) * 4])
        buffer[: end - start] = chunk[start - first * 3 : end - first * 3]
        self.pos = end
        return end - start


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
