"""``Idempotency-Key`` for POST endpoints that create things (POST /jobs, /jobs/batch
and /chat/completions): the first successful answer is stored for
``IDEMPOTENCY_TTL_SECONDS`` (24 h) and returned again, same status and body, to a retry
with the same key and the same body.

- A retry while the first request still runs: 409 ``idempotency_key_in_use``.
- The same key with a different body (or on another endpoint): 422
  ``idempotency_key_reused`` -- a client bug, never silently served.
- Only successes (2xx) are stored: a request refused for a fixable reason (validation,
  the concurrent-job limit) may be retried with the same key once fixed.
Keys are per account. The record lives in Redis; the job row keeps the key too.
"""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings

from core import jsonread
from core.errors import ApiError
from core.redis import redis_client

if TYPE_CHECKING:
    from core.tx import Db

MAX_KEY_LENGTH = 200
IN_FLIGHT_SECONDS = 60


def reused() -> ApiError:
    return ApiError(
        "This Idempotency-Key was used with a different request",
        code="idempotency_key_reused",
        status_code=422,
    )


def check_key(key: str) -> str:
    if not (0 < len(key) <= MAX_KEY_LENGTH) or not key.isprintable() or not key.isascii():
        raise ApiError(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            code="invalid_idempotency_key",
            status_code=422,
        )
    return key


def fingerprint(scope: str, body: Any) -> str:
    """The SHA-256 of ``scope`` and ``orjson.dumps(body, option=OPT_SORT_KEYS)``, hashed
    as it is written: a body may carry an image of megabytes, and dumping it whole would
    hold one more copy of it (issue 20)."""
    digest = hashlib.sha256(scope.encode())
    _hash_json(digest, body, WALKED_LEVELS)
    return digest.hexdigest()


WALKED_LEVELS = 8  # deeper values are dumped whole: orjson's own errors for a deep one
STRING_SLICE = 64 * 1024  # characters of a long string dumped at a time


def _hash_json(digest: "hashlib._Hash", value: Any, levels: int) -> None:
    """``orjson.dumps(value, option=OPT_SORT_KEYS)`` into ``digest``, a long string a
    slice at a time (orjson escapes each character on its own, so slices join up)."""
    if isinstance(value, str) and len(value) > STRING_SLICE:
        digest.update(b'"')
        for start in range(0, len(value), STRING_SLICE):
            digest.update(orjson.dumps(value[start : start + STRING_SLICE])[1:-1])
        digest.update(b'"')
    elif isinstance(value, dict) and levels and all(isinstance(k, str) for k in value):
        digest.update(b"{")
        for n, name in enumerate(sorted(value)):
            digest.update(b"%s%s:" % (b"," if n else b"", orjson.dumps(name)))
            _hash_json(digest, value[name], levels - 1)
        digest.update(b"}")
    elif isinstance(value, list) and levels:
        digest.update(b"[")
        for n, item in enumerate(value):
            if n:
                digest.update(b",")
            _hash_json(digest, item, levels - 1)
        digest.update(b"]")
    else:
        digest.update(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


@dataclass(frozen=True)
class Claim:
    """A request's hold on its key: ``answer`` is the stored ``(status, body)`` of the
    first request when this one is a retry."""

    name: str
    digest: str
    answer: tuple[int, Any] | None = None


def claim(*, user_id: object, key: str, scope: str, body: Any) -> Claim:
    """Take ``key`` for this request, or find the answer stored for it; 409 while the
    first request still runs, 422 when the key came with another request."""
    redis = redis_client()
    name = f"idem:{user_id}:{hashlib.sha256(key.encode()).hexdigest()}"
    digest = fingerprint(scope, body)
    running = orjson.dumps({"fingerprint": digest, "state": "running"})
    if redis.set(name, running, nx=True, ex=IN_FLIGHT_SECONDS):
        return Claim(name, digest)
    stored = jsonread.loads(redis.get(name) or b"{}")  # the answer may carry an image
    if stored and stored.get("fingerprint") != digest:
        raise reused()
    if stored.get("state") == "done":
        return Claim(name, digest, (stored["status"], stored["body"]))
    raise ApiError(
        "A request with this Idempotency-Key is still being processed",
        code="idempotency_key_in_use",
        status_code=409,
    )


def settle(held: Claim, status: int | None, body: Any = None) -> None:
    """Store a success (2xx) for ``IDEMPOTENCY_TTL_SECONDS``; give the key back
    otherwise (``status`` None: the request failed)."""
    redis = redis_client()
    if status is not None and 200 <= status < 300:
        record = {"fingerprint": held.digest, "state": "done", "status": status, "body": body}
        # A memoryview is sent as it is; bytes would be copied whole into one command by
        # hiredis, three times over (the answer carries the job's input: an image?).
        stored = memoryview(orjson.dumps(record, default=str))
        redis.set(held.name, stored, ex=settings.IDEMPOTENCY_TTL_SECONDS)
    else:
        redis.delete(held.name)


async def run_once(
    db: "Db",
    *,
    user_id: object,
    key: str,
    scope: str,
    body: Any,
    run: Callable[[], Awaitable[tuple[int, Any]]],
) -> tuple[int, Any, bool]:
    """``(status, body, replayed)``: the stored answer for ``key``, or ``run()``'s. Its
    Redis calls go through ``db.call`` (a thread, away from an event loop)."""
    held = await db.call(lambda: claim(user_id=user_id, key=key, scope=scope, body=body))
    if held.answer is not None:
        return *held.answer, True
    try:
        status, result = await run()
    except BaseException:
        await db.call(settle, held, None)
        raise
    await db.call(settle, held, status, result)
    return status, result, False
