"""Brute-force limits on pairing codes, shared by every web process through Redis.

A desktop code has ~30 bits (RFC 8628 §5.1 asks for rate limits on such short codes).
Wrong, expired and used codes count as failures in sliding one-hour windows
(core.windows) per account, per address (an IPv6 /64) and in total. Once the account's
or the address's window is full, every attempt from it is refused until a failure leaves
the window, valid codes included, so guessing stays blind. The total limit is one that a
stranger can fill from many addresses, so it never stops the others: past it, only an
account and an address that have not failed within the hour may try, and a failure then
stops them too. With the defaults (1,000 failures an hour in total) and even 1,000 live
codes, the chance that guessing finds one is 1000·1000/2^30 ≈ 0.1 % an hour, plus one
guess per fresh address past the total. A live code looked up by more than
PAIRING_MAX_ACCOUNTS_PER_CODE different accounts is locked: it has leaked or is being
guessed: it is refused from then on, and the Island's next request for a code (the agent
makes one when it starts, and when its code's time is up) gets a new one.
"""

from django.conf import settings

from core import windows
from core.redis import redis_client

WINDOW_SECONDS = 3600


def _windows(user_id: object | None, ip: str) -> tuple[list[windows.Window], windows.Window]:
    """The windows of whoever asks (the account's, if any, and the address's), and the
    total one."""
    own = [
        windows.Window(
            f"pairing:fail:ip:{windows.address(ip)}",
            settings.PAIRING_MAX_FAILURES_PER_IP,
            WINDOW_SECONDS,
        )
    ]
    if user_id is not None:
        limit = settings.PAIRING_MAX_FAILURES_PER_USER
        own.append(windows.Window(f"pairing:fail:user:{user_id}", limit, WINDOW_SECONDS))
    total = windows.Window(
        "pairing:fail:total", settings.PAIRING_MAX_FAILURES_TOTAL, WINDOW_SECONDS
    )
    return own, total


def retry_after(*, user_id: object | None, ip: str) -> int | None:
    """Seconds until attempts are allowed again, or None when no limit is reached."""
    own, total = _windows(user_id, ip)
    *counts, in_total = windows.check([*own, total])
    wait = max(count.retry_after for count in counts)
    if wait:
        return wait
    if in_total.full and any(count.count for count in counts):
        return in_total.retry_after
    return None


def record_failure(*, user_id: object | None, ip: str) -> None:
    own, total = _windows(user_id, ip)
    windows.record([*own, total])


def _code_accounts(code_hash: str) -> str:
    return f"pairing:code-accounts:{code_hash}"


def code_locked(code_hash: str) -> bool:
    """Whether too many accounts have looked this code up (for as long as it lives)."""
    return redis_client().scard(_code_accounts(code_hash)) > settings.PAIRING_MAX_ACCOUNTS_PER_CODE


def note_account_on_code(*, code_hash: str, user_id: object, ttl_seconds: int) -> bool:
    """Remember that this account looked the code up; False once too many accounts have."""
    key = _code_accounts(code_hash)
    pipe = redis_client().pipeline(transaction=False)
    pipe.sadd(key, str(user_id))
    pipe.expire(key, max(1, ttl_seconds))
    pipe.scard(key)
    accounts = pipe.execute()[2]
    return accounts <= settings.PAIRING_MAX_ACCOUNTS_PER_CODE
