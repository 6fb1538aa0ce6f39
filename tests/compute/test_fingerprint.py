"""The fingerprint of an idempotent request: the same digest as ever, hashed as it is
written (a body with an image is never serialized whole)."""

import hashlib
import random
import tracemalloc

import orjson
import pytest

from compute.services.idempotency import fingerprint

LONG_TEXT = "".join(random.Random(1).choice('abcé\u2028"\\\n😀/<\x00') for _ in range(200_000))
BODIES = {
    "empty": {},
    "a job": {"workload": "ocr-text", "input": {"image": LONG_TEXT}, "priority": 0},
    "nested": {"b": 1, "a": [1, 2.5, None, True, {"z": "y", "é": LONG_TEXT}]},
    "deeper than walked": [[[[[[[[[[[[{"a": LONG_TEXT}]]]]]]]]]]]],
    "numbers": {"k": {"kk": {"kkk": [LONG_TEXT, 1e300, -0.0, 2**63]}}},
    "keys to sort": {"b": {}, "a": [], "c": {"é": 1, "e": 2, "E": 3, "😀": 4, "\uffff": 5}},
    "a long string alone": LONG_TEXT,
    "a number alone": 3,
}


def dumped_whole(scope: str, body: object) -> str:
    """The fingerprint as it was first written."""
    return hashlib.sha256(
        scope.encode() + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_it_is_the_digest_of_the_body_dumped_whole(body):
    assert fingerprint("POST /jobs", body) == dumped_whole("POST /jobs", body)


def test_a_body_too_deep_for_orjson_fails_as_it_did():
    deep: list = []
    inner = deep
    for _ in range(300):
        inner.append([])
        inner = inner[0]

    with pytest.raises(orjson.JSONEncodeError):
        fingerprint("POST /jobs", deep)


def test_an_image_is_hashed_a_slice_at_a_time():
    image = "".join(random.Random(2).choice("ABCDEFGH+/") for _ in range(8 * 1024 * 1024))
    body = {"workload": "ocr-text", "input": {"image": image}}

    tracemalloc.start()
    try:
        fingerprint("POST /jobs", body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < len(image) / 4  # a slice's worth: dumped whole, it was 12 times the image
