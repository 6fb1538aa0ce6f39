"""Account emails. Links are built from PUBLIC_URL, never from a request's Host header."""

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from portal.models import User


def send_magic_link(*, user: User, token: str) -> None:
    url = settings.PUBLIC_URL + reverse("magic_link_confirm", args=[token])
    minutes = int(settings.MAGIC_LINK_TTL.total_seconds() // 60)
    context = {"user": user, "url": url, "minutes": minutes}
    body = render_to_string("registration/magic_link_email.txt", context)
    send_mail("Your Archipelago sign-in link", body, None, [user.email])
