"""Sessions stored by the hash of their key (portal.sessions) and "Sign out everywhere"."""

import hashlib
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from portal.models import Session, User
from portal.sessions import SessionStore
from portal.tasks import clear_expired_sessions

PASSWORD = "correct horse battery"


def signed_in(user: User, ip: str = "127.0.0.1") -> Client:
    """A browser that signed in with the password."""
    client = Client(REMOTE_ADDR=ip)
    response = client.post(reverse("login"), {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302
    return client


def cookie(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.mark.django_db
def test_the_database_holds_only_the_hash_of_a_session_key(user):
    key = cookie(signed_in(user))

    row = Session.objects.get()
    assert row.session_key == hashlib.sha256(key.encode()).hexdigest()
    assert row.user == user
    assert not Session.objects.filter(session_key=key).exists()
    assert key not in row.session_data


@pytest.mark.django_db
def test_a_dump_of_the_session_table_opens_no_session(user):
    """GIVEN a copy of the session table WHEN its stored keys are sent as cookies THEN
    none of them is a session: the page asks to log in."""
    signed_in(user)
    thief = Client()

    for stored in Session.objects.values_list("session_key", flat=True):
        thief.cookies[settings.SESSION_COOKIE_NAME] = stored
        response = thief.get(reverse("settings"))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_log_out_deletes_the_session(user):
    client = signed_in(user)

    client.post(reverse("logout"))

    assert not Session.objects.exists()


@pytest.mark.django_db
def test_sign_out_everywhere_ends_the_other_sessions_and_keeps_this_one(user, other_user):
    laptop, phone = signed_in(user, "192.0.2.1"), signed_in(user, "192.0.2.2")
    someone_else = signed_in(other_user)
    assert "also signed in 1 other time" in laptop.get(reverse("settings")).content.decode()

    response = laptop.post(reverse("sign_out_everywhere"), follow=True)

    assert "Signed out everywhere else (1 session)." in response.content.decode()
    assert "You are signed in only here." in response.content.decode()
    assert phone.get(reverse("settings"))["Location"].startswith(reverse("login"))
    assert someone_else.get(reverse("settings")).status_code == 200
    assert Session.objects.filter(user=user).count() == 1


@pytest.mark.django_db
def test_the_admin_works_with_hashed_sessions(db):
    User.objects.create_superuser(email="boss@example.com", password=PASSWORD)
    client = Client()
    login = {"username": "boss@example.com", "password": PASSWORD, "next": "/admin/"}

    assert client.post("/admin/login/", login)["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/portal/user/").status_code == 200


@pytest.mark.django_db
def test_expired_sessions_are_cleared(user):
    signed_in(user)
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    signed_in(user)

    clear_expired_sessions()

    assert Session.objects.count() == 1


@pytest.fixture
def bare_user(db) -> User:
    """An account without credits (its ledger would protect it from deletion)."""
    return User.objects.create_user(email="bare@example.com", password=PASSWORD)


@pytest.mark.django_db
def test_deleting_an_account_deletes_its_sessions(bare_user, other_user):
    signed_in(bare_user)
    signed_in(other_user)

    bare_user.delete()

    assert list(Session.objects.values_list("user", flat=True)) == [other_user.pk]


@pytest.mark.django_db(transaction=True)  # the save commits, as in a request
def test_a_session_of_an_account_deleted_meanwhile_is_still_saved(bare_user):
    """GIVEN a request whose account is deleted while it runs WHEN its session is saved
    THEN it is (a refused insert would make Django's store try again forever)."""
    store = SessionStore()
    store[SESSION_KEY] = str(bare_user.pk)
    bare_user.delete()

    store.save()

    assert Session.objects.count() == 1
