"""Limits on sign-in attempts and account emails (core.windows: sliding windows).

A limit that a stranger can fill must not lock the owner out. So attempts count per
(email, address) and per address; per email only at a much higher level (many
addresses guessing one password), and never the magic link: failed passwords do not
count against it, and a magic link or password reset asked for too often for one email
is answered as usual without sending more (the mailbox already holds a live link sent
within the window, which lasts as long as a magic link). Emails are hashed so that Redis
never holds them in clear.
"""

import hashlib
from dataclasses import dataclass

from django.conf import settings

from core import windows

EMAILS = ("magic_link", "password_reset")


@dataclass(frozen=True)
class AttemptLimit:
    per_email_and_ip: int
    per_ip: int
    per_email: int  # for EMAILS: emails sent
    seconds: int


def _limits(action: str) -> AttemptLimit:
    if action == "login":
        return AttemptLimit(
            settings.LOGIN_MAX_FAILURES_PER_EMAIL_AND_IP,
            settings.LOGIN_MAX_FAILURES_PER_IP,
            settings.LOGIN_MAX_FAILURES_PER_EMAIL,
            settings.LOGIN_FAILURE_WINDOW_SECONDS,
        )
    if action == "signup":
        return AttemptLimit(per_email_and_ip=5, per_ip=10, per_email=5, seconds=3600)
    return AttemptLimit(per_email_and_ip=5, per_ip=20, per_email=5, seconds=15 * 60)


def _email_id(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def _windows(action: str, ip: str, email: str) -> tuple[list[windows.Window], windows.Window]:
    """The windows of who asks (the email from this address, the address), and the
    email's."""
    limit, address, email_id = _limits(action), windows.address(ip), _email_id(email)
    requester = [
        windows.Window(
            f"auth:{action}:email-ip:{email_id}:{address}", limit.per_email_and_ip, limit.seconds
        ),
        windows.Window(f"auth:{action}:ip:{address}", limit.per_ip, limit.seconds),
    ]
    by_email = windows.Window(f"auth:{action}:email:{email_id}", limit.per_email, limit.seconds)
    return requester, by_email


def exhausted(*, action: str, ip: str, email: str) -> int:
    """Seconds until this address may try ``action`` for this email again; 0: now."""
    requester, by_email = _windows(action, ip, email)
    return windows.retry_after(requester if action in EMAILS else [*requester, by_email])


def record(*, action: str, ip: str, email: str) -> None:
    """Count one attempt of ``action`` (for login: one failure)."""
    requester, by_email = _windows(action, ip, email)
    windows.record(requester if action in EMAILS else [*requester, by_email])


def may_send(*, action: str, email: str) -> bool:
    """Whether one more email of ``action`` may go to ``email`` now (counted if so)."""
    _, by_email = _windows(action, "", email)
    if windows.retry_after([by_email]):
        return False
    windows.record([by_email])
    return True
