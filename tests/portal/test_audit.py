"""The account's audit log: each security-relevant action writes its entry (and a failed
one none), each account sees only its own (API and /settings), staff see all in the admin."""

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from portal import audit, services
from portal.models import AuditEntry, User

PASSWORD = "correct horse battery"
A = AuditEntry.Action


def actions(user: User) -> list[str]:
    """The account's actions, oldest first."""
    return list(
        AuditEntry.objects.filter(account=user).order_by("id").values_list("action", flat=True)
    )


def key_client(raw: str) -> APIClient:
    client = APIClient(REMOTE_ADDR="198.51.100.7")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def staff(db) -> Client:
    """A Django test client signed in as a superuser."""
    boss = User.objects.create_superuser(email="boss@example.com", password=PASSWORD)
    client = Client(REMOTE_ADDR="192.0.2.1")
    client.force_login(boss)
    return client


# --- Sign-ins and sign-outs


@pytest.mark.django_db
def test_a_sign_in_is_logged_with_its_address(user):
    client = Client(REMOTE_ADDR="203.0.113.5")

    client.post(reverse("login"), {"username": user.email, "password": PASSWORD})

    entry = AuditEntry.objects.get(account=user)
    assert (entry.action, entry.actor, entry.by_user, entry.ip) == (
        A.SIGNED_IN, "user", user, "203.0.113.5"
    )  # fmt: skip
    assert entry.details == {"page": "login"}


@pytest.mark.django_db
def test_a_wrong_password_is_logged_against_the_account_and_an_unknown_email_nowhere(user):
    client = Client(REMOTE_ADDR="203.0.113.6")

    client.post(reverse("login"), {"username": user.email, "password": "guess"})
    client.post(reverse("login"), {"username": "nobody@example.com", "password": "guess"})

    entry = AuditEntry.objects.get()
    assert (entry.account, entry.action, entry.actor, entry.by_user, entry.ip) == (
        user, A.SIGN_IN_FAILED, "anonymous", None, "203.0.113.6"
    )  # fmt: skip
    assert "guess" not in str(entry.details)


@pytest.mark.django_db
def test_a_failed_admin_sign_in_is_logged_too(staff):
    boss = User.objects.get(email="boss@example.com")

    Client().post("/admin/login/", {"username": boss.email, "password": "guess", "next": "/admin/"})

    assert actions(boss) == [A.SIGNED_IN, A.SIGN_IN_FAILED]  # the fixture's, then this one


@pytest.mark.django_db
def test_signing_out_and_out_everywhere_else_are_logged(user):
    laptop, phone = Client(), Client()
    for client in (laptop, phone):
        client.post(reverse("login"), {"username": user.email, "password": PASSWORD})

    laptop.post(reverse("sign_out_everywhere"))
    laptop.post(reverse("logout"))

    assert actions(user) == [A.SIGNED_IN, A.SIGNED_IN, A.SIGNED_OUT, A.SIGNED_OUT]
    elsewhere = AuditEntry.objects.filter(account=user, action=A.SIGNED_OUT).order_by("id")
    assert [entry.details for entry in elsewhere] == [{"elsewhere": 1}, {}]


# --- API keys


@pytest.mark.django_db
def test_creating_editing_and_revoking_a_key_with_a_key_are_logged_with_that_key(user):
    acting, raw = services.create_api_key(user=user, name="admin", scopes=["read", "write", "keys"])
    client = key_client(raw)

    created = client.post("/api/v1/api-keys", {"name": "ci", "scopes": ["read"]}, format="json")
    key_id = created.json()["data"]["id"]
    client.patch(f"/api/v1/api-keys/{key_id}", {"spend_cap_day": "2"}, format="json")
    client.delete(f"/api/v1/api-keys/{key_id}")

    entries = list(AuditEntry.objects.filter(account=user).order_by("id"))
    assert [e.action for e in entries] == [A.KEY_CREATED, A.KEY_UPDATED, A.KEY_REVOKED]
    assert {(e.actor, e.by_key_id, e.ip) for e in entries} == {("key", acting.pk, "198.51.100.7")}
    assert entries[1].details["fields"] == ["spend_cap_day"]
    assert entries[0].details["key_id"] == key_id
    assert raw not in str([e.details for e in entries])


@pytest.mark.django_db
def test_a_key_edit_refused_for_going_beyond_the_acting_key_logs_nothing(user):
    _, raw = services.create_api_key(user=user, name="narrow", scopes=["read", "keys"])
    target, _ = services.create_api_key(user=user, name="target", scopes=["read"])

    response = key_client(raw).patch(
        f"/api/v1/api-keys/{target.pk}", {"scopes": ["read", "write"]}, format="json"
    )

    assert response.status_code == 403
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_staff_revoking_a_key_in_the_admin_is_logged_as_staff(staff, user):
    key, _ = services.create_api_key(user=user, name="leaked")

    staff.post("/admin/portal/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]})

    entry = AuditEntry.objects.get(account=user)
    assert (entry.action, entry.actor, entry.by_user.email) == (
        A.KEY_REVOKED, "staff", "boss@example.com"
    )  # fmt: skip


# --- Staff


@pytest.mark.django_db
def test_staff_changing_an_accounts_flags_is_logged_with_before_and_after(staff, user):
    form = {"email": user.email, "display_name": "", "is_active": "on", "is_staff": "on",
            "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}  # fmt: skip

    response = staff.post(f"/admin/portal/user/{user.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    entry = AuditEntry.objects.get(account=user)
    assert (entry.action, entry.actor, entry.details) == (
        A.PERMISSIONS_CHANGED, "staff", {"is_staff": [False, True]}
    )  # fmt: skip


def rename_then_fail(user: User) -> None:
    """An action that writes its entry, then fails in the same transaction."""
    with transaction.atomic():
        audit.record(account=user, action=A.ISLAND_RENAMED, actor=audit.Actor(user=user))
        raise RuntimeError("the action failed after writing its entry")


@pytest.mark.django_db
def test_an_action_rolled_back_leaves_no_entry(user):
    with pytest.raises(RuntimeError):
        rename_then_fail(user)

    assert not AuditEntry.objects.exists()


# --- Who sees what


@pytest.fixture
def two_logs(user, other_user) -> None:
    """An entry on each account, from an address only that account's entry shows."""
    audit.record(account=user, action=A.SIGNED_IN, actor=audit.Actor(user=user, ip="192.0.2.10"))
    audit.record(
        account=other_user, action=A.SIGNED_IN, actor=audit.Actor(user=other_user, ip="192.0.2.99")
    )


def test_the_api_answers_only_the_accounts_own_entries_paginated(api, user, two_logs):
    for _ in range(2):
        audit.record(account=user, action=A.SIGNED_OUT, actor=None)

    page = api.get("/api/v1/account/audit?limit=2").json()
    rest = api.get("/api/v1/account/audit?limit=2&offset=2").json()

    assert page["meta"] == {"total": 3, "limit": 2, "offset": 0}
    assert [e["action"] for e in page["data"] + rest["data"]] == [
        "signed_out",
        "signed_out",
        "signed_in",
    ]
    assert page["data"][0]["actor"] == "system"
    assert rest["data"][0]["ip"] == "192.0.2.10"


def test_the_api_needs_the_keys_scope_of_a_key(user, two_logs):
    _, raw = services.create_api_key(user=user, name="reader", scopes=["read"])

    response = key_client(raw).get("/api/v1/account/audit")

    assert response.status_code == 403
    assert "error" in response.json()


def test_settings_shows_the_accounts_own_entries_only(client, user, two_logs):
    client.force_login(user)

    html = client.get(reverse("settings")).content.decode()

    assert 'id="audit-log"' in html
    assert "192.0.2.10" in html
    assert "192.0.2.99" not in html


def test_settings_runs_one_query_for_the_log_however_long(
    client, user, django_assert_max_num_queries
):
    key, _ = services.create_api_key(user=user, name="k")
    for _ in range(20):
        audit.record(
            account=user, action=A.KEY_UPDATED, actor=audit.Actor(user=user, key_id=str(key.pk))
        )
    client.force_login(user)

    with django_assert_max_num_queries(8):
        html = client.get(reverse("settings")).content.decode()

    assert html.count(f"key {key.prefix}…") == 20


def test_the_admin_lists_and_filters_the_log_read_only(staff, user, other_user, two_logs):
    audit.record(account=user, action=A.KEY_CREATED, actor=None)

    everything = staff.get("/admin/portal/auditentry/").content.decode()
    by_action = staff.get("/admin/portal/auditentry/?action__exact=key_created").content.decode()
    by_account = staff.get(f"/admin/portal/auditentry/?account__id__exact={other_user.pk}")
    added = staff.get("/admin/portal/auditentry/add/")

    assert everything.count('class="field-action"') >= 3
    assert by_action.count('class="field-action"') == 1
    assert "API key created" in by_action
    assert by_account.content.decode().count('class="field-action"') == 1
    assert "grace@example.com" in by_account.content.decode()
    assert added.status_code == 403


@pytest.mark.django_db
def test_a_magic_link_sign_in_is_logged_as_the_account_holder(client, user, mailoutbox):
    token = services.create_magic_link(email=user.email)[1]

    client.post(reverse("magic_link_confirm", args=[token]))

    entry = AuditEntry.objects.get(account=user)
    assert (entry.action, entry.actor, entry.details) == (
        A.SIGNED_IN, "user", {"page": "magic_link_confirm"}
    )  # fmt: skip
    assert token not in str(entry.details)
