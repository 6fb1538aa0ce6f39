"""Sign-up, log in and out, magic links and password reset, through the Django test client."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.selectors import available_credits
from portal.models import MagicLink, User
from portal.services import hash_key

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """A cheap hasher: failed logins run the hasher even for unknown emails."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


@pytest.fixture(autouse=True)
def _emails_sent_at_once():
    """Account emails are made and sent by the Celery worker (portal.tasks); here the
    task runs within the request, so that the test sees its email."""
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def link_in(message) -> str:
    return re.search(r"https?://\S+", message.body).group(0)


def local(url: str) -> str:
    """The path of a link built from PUBLIC_URL."""
    assert url.startswith(settings.PUBLIC_URL)
    return url.removeprefix(settings.PUBLIC_URL)


@pytest.mark.django_db
def test_sign_up_creates_an_account_with_the_starting_grant_and_signs_in(client):
    response = client.post(reverse("signup"), {"email": "New@Example.com", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == reverse("settings")
    user = User.objects.get(email="new@example.com")
    assert available_credits(user=user) == Decimal(settings.STARTING_CREDITS) > 0
    assert client.get(reverse("settings")).status_code == 200


@pytest.mark.django_db
def test_sign_up_shows_a_taken_email_next_to_the_field(client, user):
    response = client.post(reverse("signup"), {"email": user.email.upper(), "password": PASSWORD})

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="id_email_error"' in html
    assert "already exists" in html
    assert 'aria-invalid="true"' in html
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_sign_up_rejects_a_weak_password(client):
    response = client.post(reverse("signup"), {"email": "new@example.com", "password": "123"})

    assert 'id="id_password_error"' in response.content.decode()
    assert not User.objects.filter(email="new@example.com").exists()


@pytest.mark.django_db
def test_sign_up_is_limited_per_ip(client):
    for n in range(10):
        client.post(reverse("signup"), {"email": f"bot{n}@example.com", "password": "x"})

    response = client.post(reverse("signup"), {"email": "late@example.com", "password": PASSWORD})

    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()
    assert not User.objects.filter(email="late@example.com").exists()


@pytest.mark.django_db
def test_log_in_accepts_the_email_in_any_case(client, user):
    response = client.post(reverse("login"), {"username": "ADA@example.com", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == reverse("settings")
    assert client.session.get_expiry_age() == 30 * 24 * 3600


@pytest.mark.django_db
def test_log_in_with_a_wrong_password_says_so_without_signing_in(client, user):
    response = client.post(reverse("login"), {"username": user.email, "password": "wrong"})

    assert response.status_code == 200
    assert "do not match an account" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_log_in_is_refused_after_ten_failed_attempts_for_one_email(client, user):
    for _ in range(10):
        client.post(reverse("login"), {"username": user.email, "password": "guess"})

    response = client.post(reverse("login"), {"username": user.email, "password": PASSWORD})

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many attempts. Try again in" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_log_in_is_refused_after_too_many_failures_from_one_ip_across_emails(client, user):
    for n in range(50):
        client.post(reverse("login"), {"username": f"guess{n}@example.com", "password": "x"})

    response = client.post(reverse("login"), {"username": user.email, "password": PASSWORD})

    assert response.status_code == 429


@pytest.mark.django_db
def test_ten_wrong_passwords_from_one_address_do_not_lock_the_owner_out(user):
    """GIVEN a stranger's ten wrong passwords for the owner's email from one address
    WHEN the owner signs in from another THEN they are in; the stranger is refused."""
    stranger, owner = Client(REMOTE_ADDR="203.0.113.66"), Client(REMOTE_ADDR="198.51.100.5")
    for _ in range(10):
        stranger.post(reverse("login"), {"username": user.email, "password": "guess"})

    refused = stranger.post(reverse("login"), {"username": user.email, "password": "guess"})
    signed_in = owner.post(reverse("login"), {"username": user.email, "password": PASSWORD})

    assert refused.status_code == 429
    assert signed_in.status_code == 302
    assert owner.session["_auth_user_id"] == str(user.pk)


@pytest.mark.django_db
def test_failures_for_one_email_from_many_addresses_stop_at_a_much_higher_level(user, settings):
    settings.LOGIN_MAX_FAILURES_PER_EMAIL = 30
    for n in range(30):
        Client(REMOTE_ADDR=f"10.8.0.{n}").post(
            reverse("login"), {"username": user.email, "password": "guess"}
        )

    owner = Client(REMOTE_ADDR="198.51.100.5")
    response = owner.post(reverse("login"), {"username": user.email, "password": PASSWORD})

    assert response.status_code == 429
    assert 890 < int(response["Retry-After"]) <= 900


@pytest.mark.django_db
def test_failed_passwords_never_block_the_magic_link(client, user, mailoutbox, settings):
    settings.LOGIN_MAX_FAILURES_PER_EMAIL = 10
    for _ in range(10):
        client.post(reverse("login"), {"username": user.email, "password": "guess"})
    assert client.post(reverse("login"), {"username": user.email}).status_code == 429

    client.post(reverse("magic_link"), {"email": user.email})

    assert client.post(local(link_in(mailoutbox[0])))["Location"] == reverse("settings")
    assert client.session["_auth_user_id"] == str(user.pk)


@pytest.mark.django_db
def test_a_stranger_asking_for_many_sign_in_links_leaves_the_owner_one_that_works(user, mailoutbox):
    """GIVEN a stranger who asked for sign-in links for the owner's email until refused
    WHEN the owner asks from another address THEN the same answer, no more emails, and
    the newest link in the mailbox signs them in."""
    stranger, owner = Client(REMOTE_ADDR="203.0.113.66"), Client(REMOTE_ADDR="198.51.100.5")
    statuses = [
        stranger.post(reverse("magic_link"), {"email": user.email}).status_code for _ in range(6)
    ]

    response = owner.post(reverse("magic_link"), {"email": user.email})

    assert statuses == [302] * 5 + [429]
    assert response["Location"] == reverse("magic_link_sent")
    assert len(mailoutbox) == 5
    assert owner.post(local(link_in(mailoutbox[-1])))["Location"] == reverse("settings")


@pytest.fixture
def admin_user(db) -> User:
    """A superuser."""
    return User.objects.create_superuser(email="boss@example.com", password=PASSWORD)


@pytest.mark.django_db
def test_admin_login_is_limited_like_the_portal_login(admin_user):
    stranger, owner = Client(REMOTE_ADDR="203.0.113.66"), Client(REMOTE_ADDR="198.51.100.5")
    login = {"username": admin_user.email, "password": "guess", "next": "/admin/"}
    statuses = [stranger.post("/admin/login/", login).status_code for _ in range(11)]

    refused = stranger.post("/admin/login/", {**login, "password": PASSWORD})
    portal_too = stranger.post(reverse("login"), {**login, "password": PASSWORD})
    signed_in = owner.post("/admin/login/", {**login, "password": PASSWORD})

    assert statuses == [200] * 10 + [429]
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 900
    assert "Too many attempts. Try again in 15 minutes." in refused.content.decode()
    assert portal_too.status_code == 429  # one set of counters for both doors
    assert signed_in["Location"] == "/admin/"


@pytest.mark.django_db
def test_log_out_ends_the_session(client, user):
    client.force_login(user)

    response = client.post(reverse("logout"))

    assert response.status_code == 302
    assert client.get(reverse("settings")).status_code == 302


@pytest.mark.django_db
def test_magic_link_signs_in_once_and_only_once(client, user, mailoutbox):
    client.post(reverse("magic_link"), {"email": user.email})
    url = local(link_in(mailoutbox[0]))

    # Opening the link only shows a button, so mail scanners cannot use it up.
    assert client.get(url).status_code == 200
    assert "_auth_user_id" not in client.session
    assert client.post(url)["Location"] == reverse("settings")
    assert client.session["_auth_user_id"] == str(user.pk)

    client.logout()
    again = client.post(url)
    assert again.status_code == 400
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_magic_link_stores_only_the_hash_of_its_token(client, user, mailoutbox):
    client.post(reverse("magic_link"), {"email": user.email})
    token = local(link_in(mailoutbox[0])).rsplit("/", 1)[1]

    link = MagicLink.objects.get(user=user)
    assert link.token_hash == hash_key(token)
    assert token not in link.token_hash


@pytest.mark.django_db
def test_magic_link_expires_after_15_minutes(client, user, mailoutbox, monkeypatch):
    client.post(reverse("magic_link"), {"email": user.email})
    url = local(link_in(mailoutbox[0]))
    issued = MagicLink.objects.get(user=user).created_at

    monkeypatch.setattr(timezone, "now", lambda: issued + timedelta(minutes=15, seconds=1))
    assert client.post(url).status_code == 400

    monkeypatch.setattr(timezone, "now", lambda: issued + timedelta(minutes=14, seconds=59))
    assert client.post(url).status_code == 302


@pytest.mark.django_db
def test_magic_link_request_answers_the_same_for_an_unknown_email(client, user, mailoutbox):
    known = client.post(reverse("magic_link"), {"email": user.email})
    unknown = client.post(reverse("magic_link"), {"email": "nobody@example.com"})

    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]
    assert [m.to for m in mailoutbox] == [[user.email]]


@pytest.mark.django_db
def test_magic_link_requests_are_limited_per_email(client, user, mailoutbox):
    for _ in range(5):
        client.post(reverse("magic_link"), {"email": user.email})

    response = client.post(reverse("magic_link"), {"email": user.email})

    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()
    assert len(mailoutbox) == 5


@pytest.mark.django_db
def test_password_reset_emails_a_link_that_sets_a_new_password(client, user, mailoutbox):
    response = client.post(reverse("password_reset"), {"email": user.email})

    assert response["Location"] == reverse("password_reset_done")
    assert len(mailoutbox) == 1
    form_url = client.get(local(link_in(mailoutbox[0])), follow=True).redirect_chain[-1][0]
    new = "a brand new passphrase"
    client.post(form_url, {"new_password1": new, "new_password2": new})
    user.refresh_from_db()
    assert user.check_password(new)


@pytest.mark.django_db
def test_password_reset_answers_the_same_for_an_unknown_email(client, mailoutbox):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})

    assert response["Location"] == reverse("password_reset_done")
    assert mailoutbox == []


class MailServerDown:
    """An email backend whose server does not answer."""

    def __init__(self, *args, **kwargs) -> None: ...

    def send_messages(self, messages):
        raise ConnectionRefusedError("the mail server is down")


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["magic_link", "password_reset"])
def test_a_mail_server_that_is_down_does_not_break_the_request(client, user, page, settings):
    """The request only queues the email; the worker sends it, and tries again later."""
    from config.celery import app

    app.conf.task_always_eager = False  # as in production: a worker sends it
    settings.EMAIL_BACKEND = f"{__name__}.MailServerDown"
    response = client.post(reverse(page), {"email": user.email})

    assert response.status_code == 302
    assert response["Location"] == reverse(
        f"{page}_sent" if page == "magic_link" else "password_reset_done"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("task", ["magic_link", "password_reset"])
def test_the_worker_lets_a_failed_send_fail_so_that_it_tries_again(user, task, settings):
    from portal import tasks

    settings.EMAIL_BACKEND = f"{__name__}.MailServerDown"
    with pytest.raises(ConnectionRefusedError):
        getattr(tasks, task)(user.email)
