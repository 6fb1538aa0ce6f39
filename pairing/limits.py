"""Brute-force limits on pairing codes, shared by every web process through Redis.

A desktop code has ~30 bits (RFC 8628 §5.1 asks for rate limits on such short codes).
Wrong, expired and used codes count as failures in fixed one-hour windows per account,
per IP and in total; once a counter reaches its limit every attempt in that scope is
refused until the window ends, valid codes included, so guessing stays blind. With the
defaults (1,000 failures an hour in total) and even 1,000 live codes, the chance that
guessing finds one is 1000·1000/2^30 ≈ 0.1 % an hour. A live code looked up by more
than PAIRING_MAX_ACCOUNTS_PER_CODE different accounts is locked: it has leaked or is
being guessed, and the Island's owner asks for a new one by restarting the software.
"""

import time

from django.conf import settings

from core.redis import redis_client

WINDOW_SECONDS = 3600


def _window() -> tuple[int, int]:
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    return window, max(1, int((window + 1) * WINDOW_SECONDS - now))


def _scopes(user_id: object | None, ip: str) -> list[tuple[str, int]]:
    scopes = [
        (f"ip:{ip}", settings.PAIRING_MAX_FAILURES_PER_IP),
        ("total", settings.PAIRING_MAX_FAILURES_TOTAL),
    ]
    if user_id is not None:
        scopes.insert(0, (f"user:{user_id}", settings.PAIRING_MAX_FAILURES_PER_USER))
    return scopes


def retry_after(*, user_id: object | None, ip: str) -> int | None:
    """Seconds until attempts are allowed again, or None when no limit is reached."""
    window, seconds_left = _window()
    scopes = _scopes(user_id, ip)
    counts = redis_client().mget([f"pairing:fail:{name}:{window}" for name, _ in scopes])
    for (_, limit), count in zip(scopes, counts, strict=True):
        if count is not None and int(count) >= limit:
            return seconds_left
    return None


def record_failure(*, user_id: object | None, ip: str) -> None:
    window, _ = _window()
    pipe = redis_client().pipeline(transaction=False)
    for name, _ in _scopes(user_id, ip):
        key = f"pairing:fail:{name}:{window}"
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS + 60)
    pipe.execute()


def note_account_on_code(*, code_hash: str, user_id: object, ttl_seconds: int) -> bool:
    """Remember that this account looked the code up; False once too many accounts have."""
    key = f"pairing:code-accounts:{code_hash}"
    pipe = redis_client().pipeline(transaction=False)
    pipe.sadd(key, str(user_id))
    pipe.expire(key, max(1, ttl_seconds))
    pipe.scard(key)
    accounts = pipe.execute()[2]
    return accounts <= settings.PAIRING_MAX_ACCOUNTS_PER_CODE
