"""core.jsonread.loads: orjson's values and errors, with one copy of a long string."""

import random
import tracemalloc
from typing import Any

import orjson
import pytest

from core.jsonread import LONG, MOST_QUOTES, loads

LONG_TEXT = "".join(random.Random(5).choice("ABCxyz+/=09") for _ in range(LONG + 10))
TEXT = LONG_TEXT.encode()
UNICODE = ("é😀" + LONG_TEXT).encode()
BODIES = {
    "one long string": b'{"a": "%s"}' % TEXT,
    "long strings at every depth": b'{"a": ["%s", {"k": "%s"}], "b": 1}' % (TEXT, TEXT),
    "a long key": b'{"%s": 1}' % TEXT,
    "a long key, spaces before its colon": b'{"%s"' % TEXT + b" " * 100 + b": 1}",
    "an escape": b'{"a": "%s\\n"}' % TEXT,
    "an escaped quote": b'{"a": "x\\"%s"}' % TEXT,
    "escaped backslashes before a quote": b'{"a": "\\\\\\\\", "b": "%s"}' % TEXT,
    "not UTF-8 only": b'{"a": "%s"}' % UNICODE,
    "a control character": b'{"a": "%s\x01"}' % TEXT,
    "bytes that are not UTF-8": b'{"a": "%s\xff"}' % TEXT,
    "a surrogate": b'{"a": "%s\xed\xa0\x80"}' % TEXT,
    "an unterminated string": b'{"a": "%s' % TEXT,
    "an unterminated object": b'{"a": "%s"' % TEXT,
    "a trailing comma": b'{"a": "%s",}' % TEXT,
    "junk before a string": b'{"a": x"%s"}' % TEXT,
    "junk after the document": b'{"a": "%s"} x' % TEXT,
    "a string at the top": b'"%s"' % TEXT,
    "a list at the top": b'["%s"]' % TEXT,
    "the same key twice": b'{"a": "%s", "a": "%s"}' % (TEXT, TEXT[:-1]),
    "a null character escaped": b'{"a": "%s", "b": "\\u0000"}' % TEXT,
    "deep": b'{"d":' + b"[" * 1000 + b'"%s"' % TEXT + b"]" * 1000 + b"}",
    "too deep": b'{"d":' + b"[" * 1030 + b'"%s"' % TEXT + b"]" * 1030 + b"}",
    "many escaped quotes": b'{"e": "' + b'\\"' * MOST_QUOTES + b'", "w": "%s"}' % TEXT,
    "many strings": b'{"w": "%s", "n": [%s]}'
    % (TEXT, b",".join(b'"s%d"' % n for n in range(MOST_QUOTES + 1))),
}


def orjson_answer(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return ("error", str(exc))


def our_answer(body: bytes) -> object:
    try:
        return loads(body)
    except orjson.JSONDecodeError as exc:
        return ("error", str(exc))


def same(one: Any, other: Any) -> bool:
    """``one == other``, without recursion (a document may be 1,000 levels deep)."""
    pairs = [(one, other)]
    while pairs:
        a, b = pairs.pop()
        if type(a) is not type(b):
            return False
        if isinstance(a, dict):
            if list(a) != list(b):
                return False
            pairs += [(a[k], b[k]) for k in a]
        elif isinstance(a, (list, tuple)):
            if len(a) != len(b):
                return False
            pairs += zip(a, b, strict=True)
        elif a != b:
            return False
    return True


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_it_answers_what_orjson_answers(body):
    assert same(our_answer(body), orjson_answer(body))


def test_it_answers_what_orjson_answers_for_random_documents():
    maker = random.Random(20)

    def value(depth: int = 0) -> object:
        kind = maker.random()
        if depth > 3 or kind < 0.3:
            return maker.choice([LONG_TEXT, "x", 1, None, 2.5, LONG_TEXT[: LONG + 1], "é"])
        if kind < 0.65:
            return [value(depth + 1) for _ in range(maker.randint(0, 3))]
        return {maker.choice("abcé"): value(depth + 1) for _ in range(maker.randint(0, 3))}

    for _ in range(200):
        body = orjson.dumps({"w": value()})
        if maker.random() < 0.3:
            body = body.replace(b",", b" ,\n ")
        if maker.random() < 0.2:
            body = body[: maker.randint(0, len(body))]
        assert same(our_answer(body), orjson_answer(body))


def test_a_long_string_is_built_once_and_the_body_never_copied():
    """GIVEN the body of a job with an image of 4 MiB (as base64)
    WHEN it is read
    THEN what is allocated meanwhile is the image's str, and little else (orjson alone
    would copy the body first, and reserve many times its size for its values)."""
    image = "".join(random.Random(7).choice("ABCDEFGH+/") for _ in range(4 * 1024 * 1024))
    body = orjson.dumps({"workload": "ocr-text", "input": {"image": image}})

    tracemalloc.start()
    try:
        data = loads(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert data["input"]["image"] == image
    assert peak < 1.3 * len(image)
