"""Billing in the Django admin: read-only ledger and balances, and "Grant credits"."""

import re
from decimal import Decimal as D

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Permission
from django.test import Client

from billing.models import Balance, LedgerEntry
from compute.models import RateSnapshot
from compute.services import market as exchange
from tests.factories import CargoFactory, IslandFactory

GRANT_URL = "/admin/billing/balance/grant/"


@pytest.fixture
def admin(db) -> Client:
    """A Django test client signed in as a superuser."""
    from portal.models import User

    boss = User.objects.create_superuser(email="boss@example.com", password="correct horse")
    client = Client()
    client.force_login(boss)
    return client


def grant_form(client: Client) -> dict[str, str]:
    """The fields of a freshly shown grant form (with the grant id it drew)."""
    page = client.get(GRANT_URL).content.decode()
    grant_id = re.search(r'name="grant_id" value="([0-9a-f-]+)"', page).group(1)
    return {"grant_id": grant_id}


def test_granting_credits_adds_one_ledger_entry_with_its_reason(admin, user):
    form = grant_form(admin) | {"account": user.email, "amount": "250.5", "reason": "Beta tester"}

    response = admin.post(GRANT_URL, form, follow=True)

    assert response.status_code == 200
    assert "Granted 250.5 credits to ada@example.com." in response.content.decode()
    entry = LedgerEntry.objects.filter(user=user).latest("id")
    assert (entry.kind, entry.amount, entry.reason) == ("grant", D("250.5"), "Beta tester")
    assert entry.idempotency_key == f"admin-grant:{form['grant_id']}"
    assert entry.available_after == D("10250.5")
    assert Balance.objects.get(user=user).available == D("10250.5")
    assert LogEntry.objects.get(action_flag=ADDITION).object_id == str(entry.pk)


def test_submitting_the_same_grant_form_twice_grants_once(admin, user):
    form = grant_form(admin) | {"account": user.email, "amount": "100", "reason": "Oops twice"}

    admin.post(GRANT_URL, form)
    again = admin.post(GRANT_URL, form, follow=True)

    assert "already made; nothing changed" in again.content.decode()
    assert LedgerEntry.objects.filter(reason="Oops twice").count() == 1
    assert Balance.objects.get(user=user).available == D("10100")


def test_two_forms_make_two_grants(admin, user):
    for _ in range(2):
        form = grant_form(admin) | {"account": user.email, "amount": "1", "reason": "Twice"}
        admin.post(GRANT_URL, form)

    assert LedgerEntry.objects.filter(reason="Twice").count() == 2


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"account": "nobody@example.com"}, "No account with the email nobody@example.com."),
        ({"amount": "0"}, "Ensure this value is greater than or equal to 0.000001."),
        ({"amount": "-5"}, "Ensure this value is greater than or equal to 0.000001."),
        ({"amount": "1.0000001"}, "Ensure that there are no more than 6 decimal places."),
        ({"reason": ""}, "This field is required."),
        ({"grant_id": "hold:123"}, "reload the page"),
    ],
)
def test_a_bad_grant_is_refused_with_a_message(admin, user, fields, error):
    form = grant_form(admin) | {"account": user.email, "amount": "5", "reason": "Bonus"}

    response = admin.post(GRANT_URL, form | fields)

    assert response.status_code == 200
    assert error in response.content.decode()
    assert LedgerEntry.objects.count() == 1  # the starting grant only


def test_the_grant_form_is_prefilled_from_an_accounts_balance_page(admin, user):
    balance_page = admin.get(f"/admin/billing/balance/{user.pk}/change/").content.decode()
    assert f'href="{GRANT_URL}?account=ada%40example.com"' in balance_page

    form = admin.get(f"{GRANT_URL}?account=ada%40example.com").content.decode()

    assert 'value="ada@example.com"' in form


def test_staff_without_the_ledger_permission_cannot_grant(db, user):
    from portal.models import User

    clerk = User.objects.create_user(email="clerk@example.com", password="pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_balance"))
    client = Client()
    client.force_login(clerk)
    form = {"account": user.email, "amount": "5", "reason": "x", "grant_id": "0" * 32}

    assert client.get(GRANT_URL).status_code == 403
    assert client.post(GRANT_URL, form).status_code == 403
    assert LedgerEntry.objects.count() == 1


def test_ledger_entries_cannot_be_added_changed_or_deleted_in_the_admin(admin, user):
    entry = LedgerEntry.objects.get(user=user)
    url = f"/admin/billing/ledgerentry/{entry.pk}"

    change_page = admin.get(f"{url}/change/").content.decode()
    edit = admin.post(f"{url}/change/", {"amount": "999999", "reason": "edited"})
    delete = admin.post(f"{url}/delete/", {"post": "yes"})
    bulk = admin.post(
        "/admin/billing/ledgerentry/",
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    add = admin.get("/admin/billing/ledgerentry/add/")

    assert "Starting grant" in change_page
    assert 'name="_save"' not in change_page
    assert edit.status_code == 403
    assert delete.status_code == 403
    assert add.status_code == 403
    assert bulk.status_code in (200, 302)
    entry.refresh_from_db()
    assert (entry.amount, entry.reason) == (D("10000"), "Starting grant")
    assert LedgerEntry.objects.count() == 1


def test_the_ledger_list_shows_entries_without_a_delete_action(admin, user):
    page = admin.get("/admin/billing/ledgerentry/").content.decode()

    assert "Starting grant" in page
    assert "delete_selected" not in page
    assert "/admin/billing/ledgerentry/add/" not in page


def test_balances_are_read_only(admin, user):
    url = f"/admin/billing/balance/{user.pk}/change/"

    response = admin.post(url, {"available": "1000000"})

    assert response.status_code == 403
    assert Balance.objects.get(user=user).available == D("10000")
    assert "Grant credits" in admin.get("/admin/billing/balance/").content.decode()


def test_market_models_are_read_only_lists(admin, user):
    cargo = CargoFactory(slug="llm-chat")
    island = IslandFactory(owner=user)
    exchange.set_asking_prices(owner=user, island_id=island.pk, prices={"llm-chat": D("0.02")})
    exchange.save_bid(user=user, cargo_slug="llm-chat", bid=D("0.03"))
    RateSnapshot.objects.create(
        cargo=cargo, avg_price=D(1), min_price=D(1), max_price=D(1), num_hosts=1
    )

    for model in ("askingprice", "savedbid", "ratesnapshot"):
        page = admin.get(f"/admin/compute/{model}/")
        assert page.status_code == 200, model
        assert "llm-chat" in page.content.decode(), model
        assert admin.get(f"/admin/compute/{model}/add/").status_code == 403, model


def test_a_grant_is_in_the_accounts_audit_log_once(admin, user):
    from portal.models import AuditEntry

    form = grant_form(admin) | {"account": user.email, "amount": "5", "reason": "Thanks"}

    admin.post(GRANT_URL, form)
    admin.post(GRANT_URL, form)

    entry = AuditEntry.objects.get(account=user)
    assert (entry.action, entry.actor, entry.by_user.email) == (
        "credits_granted", "staff", "boss@example.com"
    )  # fmt: skip
    assert entry.details == {"amount": "5", "reason": "Thanks"}
