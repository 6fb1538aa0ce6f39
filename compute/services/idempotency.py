"""``Idempotency-Key`` for POST endpoints that create things (POST /jobs, and
/chat/completions): the first successful answer is stored for
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

from core.errors import ApiError
from core.redis import redis_client

if TYPE_CHECKING:
    from core.tx import Db

MAX_KEY_LENGTH = 200
IN_FLIGHT_SECONDS = 60


def check_key(key: str) -> str:
    if not (0 < len(key) <= MAX_KEY_LENGTH) or not key.isprintable() or not key.isascii():
        raise ApiError(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            code="invalid_idempotency_key",
            status_code=422,
        )
    return key


def fingerprint(scope: str, body: Any) -> str:
    return hashlib.sha256(
        scope.encode() + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


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
    stored = orjson.loads(redis.get(name) or b"{}")
    if stored and stored.get("fingerprint") != digest:
        raise ApiError(
            "This Idempotency-Key was used with a different request",
            code="idempotency_key_reused",
            status_code=422,
        )
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
        redis.set(held.name, orjson.dumps(record, default=str), ex=settings.IDEMPOTENCY_TTL_SECONDS)
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
