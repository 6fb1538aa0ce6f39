"""JSON bodies read as orjson reads them, with fewer copies of a long string in memory
(issue 20: a job's input may carry an image of megabytes, as base64).

``orjson.loads`` copies the whole document before it builds the values: while a body
with an 8 MiB image is parsed, the body, orjson's copy and the image's str are all in
memory. :func:`loads` gives the same value, or the same error, with two of them at most."""

import re
import secrets
from typing import Any

import orjson

LONG = 64 * 1024  # bytes of a string literal decoded on its own, straight from the body
MOST_QUOTES = 20_000  # quotes looked at before the body is simply given to orjson
_CONTROLS = [bytes([code]) for code in range(32)]  # not allowed in a JSON string as such
_COLON = re.compile(rb"[ \t\r\n]*:")


def loads(body: bytes | str) -> Any:
    """``orjson.loads(body)``, the same value or error, holding less: orjson copies the
    whole body before it builds the values (three copies of a job's image at once: the
    body, orjson's, the str). A string value longer than :data:`LONG` bytes with no
    escape (an image's base64) is decoded here straight from the body instead, and orjson
    parses the rest with a placeholder in its place: two copies at most."""
    if not isinstance(body, bytes) or len(body) <= LONG or not (cuts := _long_strings(body)):
        return orjson.loads(body)
    view, token = memoryview(body), secrets.token_hex(16)
    try:
        values = {f"\x00{token}{n}": _plain(body, a, b) for n, (a, b) in enumerate(cuts)}
        parts: list[bytes | memoryview] = []
        start = 0
        for n, (a, b) in enumerate(cuts):
            parts += [view[start : a - 1], b'"\\u0000%s%d"' % (token.encode(), n)]
            start = b + 1
        data = orjson.loads(b"".join([*parts, view[start:]]))
    except ValueError:  # orjson's errors too
        values = {}  # let them go first
        return orjson.loads(body)  # not valid as it is: orjson's own error
    return _put_back(data, values)


def _long_strings(body: bytes) -> list[tuple[int, int]]:
    """Where the long string values are (between their quotes); none when the body has
    too many quotes to look at (a Python step each), or is not JSON that can be cut."""
    cuts: list[tuple[int, int]] = []
    position, find, quotes = 0, body.find, 0
    while (start := find(b'"', position)) != -1:  # outside a string, a quote opens one
        end = find(b'"', start + 1)
        while end != -1 and _escaped(body, end) and quotes < MOST_QUOTES:
            end, quotes = find(b'"', end + 1), quotes + 1
        quotes += 2
        if end == -1 or quotes > MOST_QUOTES:
            return []
        position = end + 1
        if end - start > LONG and find(b"\\", start, end) == -1 and not _is_key(body, end):
            cuts.append((start + 1, end))
    return cuts


def _escaped(body: bytes, quote: int) -> bool:
    backslashes = 0
    while body[quote - 1 - backslashes] == ord("\\"):
        backslashes += 1
    return backslashes % 2 == 1


def _is_key(body: bytes, quote: int) -> bool:
    return _COLON.match(body, quote + 1) is not None


def _plain(body: bytes, start: int, end: int) -> str:
    """A string literal's content with no escape, as orjson reads it (ValueError when
    orjson would refuse it). 32 searches for a control character cost less than a
    regular expression's one (5 ms against 43 for an image of 8 MiB)."""
    if any(body.find(control, start, end) != -1 for control in _CONTROLS):
        raise ValueError("a control character in a string")
    return str(memoryview(body)[start:end], "utf-8")


def _put_back(data: object, values: dict[str, str]) -> object:
    """``data`` with each placeholder replaced by its string (in place)."""
    if isinstance(data, str):
        return values.get(data, data)
    containers = [data] if isinstance(data, (dict, list)) else []
    while containers and values:
        container = containers.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for name, item in items:
            if isinstance(item, str):
                if item in values:
                    container[name] = values.pop(item)
            elif isinstance(item, (dict, list)):
                containers.append(item)
    return data
