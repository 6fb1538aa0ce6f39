"""Account emails, made and sent by the Celery worker: a request never waits for the
mail server (nor fails with it: the worker tries again), and asking for a sign-in link or
a password reset costs a request the same whether or not the account exists, since the
link itself is made in the worker. Only the email address goes through the broker, never
a link. Links are built from PUBLIC_URL, never from a request's Host header."""

import smtplib
from urllib.parse import urlsplit

from celery import shared_task
from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from core import ticks
from portal import services
from portal.keys import usage
from portal.sessions import SessionStore

# A mail server that is down or refuses for a while (not the database: core.retry): tried
# again, later each time (a new link each time; an undelivered one is never used and expires).
SENDING = {
    "autoretry_for": (OSError, smtplib.SMTPException),
    "retry_backoff": 5,
    "max_retries": 8,
    "ignore_result": True,
}


@shared_task(name="portal.magic_link", **SENDING)
def magic_link(email: str) -> None:
    """Email a sign-in link to the account of ``email``, if there is one."""
    if issued := services.create_magic_link(email=email):
        user, token = issued
        url = settings.PUBLIC_URL + reverse("magic_link_confirm", args=[token])
        minutes = int(settings.MAGIC_LINK_TTL.total_seconds() // 60)
        context = {"user": user, "url": url, "minutes": minutes}
        body = render_to_string("registration/magic_link_email.txt", context)
        send_mail("Your Archipelago sign-in link", body, None, [user.email])


class _PasswordResetForm(PasswordResetForm):
    """Django's, except that a failed send raises (Django logs it and gives up), so that
    the task tries again."""

    def send_mail(self, subject_template_name, email_template_name, context, from_email,
                  to_email, html_email_template_name=None) -> None:  # fmt: skip
        subject = "".join(render_to_string(subject_template_name, context).splitlines())
        body = render_to_string(email_template_name, context)
        send_mail(subject, body, from_email, [to_email])


@shared_task(name="portal.password_reset", **SENDING)
def password_reset(email: str) -> None:
    """Email a password reset link to the active accounts of ``email``, if any."""
    form = _PasswordResetForm(data={"email": email})
    if form.is_valid():
        form.save(
            domain_override=urlsplit(settings.PUBLIC_URL).netloc,
            use_https=settings.PUBLIC_URL.startswith("https://"),
            subject_template_name="registration/password_reset_subject.txt",
            email_template_name="registration/password_reset_email.txt",
            extra_email_context={"public_url": settings.PUBLIC_URL},
        )


@shared_task(acks_late=True, max_retries=0)
def flush_key_requests(tick: float = 0) -> int:
    """API keys' request counts, from Redis to their days (portal.keys.usage); a flush
    that fails loses its minute's counts rather than counting them twice."""
    if not ticks.claim("flush-key-requests", tick):
        return 0
    return usage.flush_requests()


@shared_task(name="portal.clear_expired_sessions", ignore_result=True)
def clear_expired_sessions(tick: float = 0) -> None:
    if ticks.claim("clear-expired-sessions", tick):
        SessionStore.clear_expired()
