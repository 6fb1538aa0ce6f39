"""The guard that reads every body under /api/v1 (portal.api.asgi.limit_api_body),
called with a stand-in app: what the app receives, and what reading it holds."""

import asyncio
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

from portal.api.asgi import limit_api_body

PART = 64 * 1024
SCOPE = {"type": "http", "method": "POST", "path": "/api/v1/jobs", "query_string": b""}


def guarded(parts: int, part_size: int = PART, *, traced: bool = False) -> tuple[list, int]:
    """The messages the app receives for a body sent in ``parts`` parts (each made as it
    is received), and the most memory the guard's reading allocated (``traced``)."""
    received: list = []
    sent = [0]

    async def receive() -> dict:
        sent[0] += 1
        return {"type": "http.request", "body": b"A" * part_size, "more_body": sent[0] < parts}

    async def app(scope, receive, send) -> None:
        if traced:
            received.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        received.append(await receive())
        received.append(dict(scope["headers"]))

    async def send(message) -> None:
        raise AssertionError(message)

    async def call() -> None:
        headers = [(b"transfer-encoding", b"chunked")]
        if traced:
            tracemalloc.start()
        await limit_api_body(app)({**SCOPE, "headers": headers}, receive, send)

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, call()).result(timeout=30)
    return received, parts * part_size


def test_a_body_in_parts_reaches_the_app_whole_in_one_message_with_its_length():
    (message, headers), size = guarded(parts=40)

    assert message == {"type": "http.request", "body": b"A" * size, "more_body": False}
    assert headers[b"content-length"] == b"%d" % size


def test_a_body_in_one_message_is_handed_on_as_it_is():
    (message, headers), size = guarded(parts=1, part_size=5 * PART)

    assert message["body"] == b"A" * size
    assert headers[b"content-length"] == b"%d" % size


def test_the_parts_and_the_whole_body_are_never_held_together():
    """GIVEN a body of 10 MiB arriving in parts of 64 KiB
    WHEN the guard reads it
    THEN it holds one copy of the body (and a part) at most: it never keeps the parts
    to join them."""
    (peak, message, _), size = guarded(parts=160, traced=True)

    assert len(message["body"]) == size
    assert peak < 1.3 * size
