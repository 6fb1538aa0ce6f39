"""The owner's audit log of Islands: paired (with the Sail credentials of its key),
renamed, unpaired (credentials revoked); a failed pairing writes nothing there."""

import pytest

from pairing import mobile, services
from portal.models import AuditEntry
from tests.factories import IslandFactory

A = AuditEntry.Action
HTMX = {"HTTP_HX_REQUEST": "true"}


def logged(user) -> list[tuple[str, dict]]:
    """The account's entries but its sign-ins (the test client's)."""
    rows = AuditEntry.objects.filter(account=user).exclude(action=A.SIGNED_IN).order_by("id")
    return [(row.action, row.details) for row in rows]


def test_pairing_logs_the_island_and_the_credentials_of_its_key(island, code, user):
    services.confirm_pairing(code=code, user=user, ip="203.0.113.20")

    about = {"island_id": str(island.pk), "name": "workstation"}
    assert logged(user) == [
        (A.ISLAND_PAIRED, about),
        (A.CREDENTIALS_ISSUED, {**about, "nkey": island.nkey}),
    ]
    assert set(AuditEntry.objects.values_list("actor", "ip")) == {("user", "203.0.113.20")}


def test_a_wrong_code_logs_nothing_in_the_account(island, code, user):
    wrong = "ZZZZZZ" if code != "ZZZZZZ" else "YYYYYY"

    with pytest.raises(services.PairingError):
        services.confirm_pairing(code=wrong, user=user, ip="203.0.113.20")

    assert not AuditEntry.objects.exists()


def test_a_phone_claiming_a_session_logs_the_pairing_for_the_sessions_account(user):
    _, code = mobile.start_mobile_session(user=user)

    island, _, _, _ = mobile.claim_mobile_session(
        code=code, device_name="Pixel 8", platform="android", hardware={}, runtimes=[],
        ip="203.0.113.21",
    )  # fmt: skip

    assert [action for action, _ in logged(user)] == [A.ISLAND_PAIRED, A.CREDENTIALS_ISSUED]
    assert logged(user)[1][1]["nkey"] == island.nkey


def test_renaming_logs_before_and_after(browser_client, user):
    island = IslandFactory(owner=user, name="old")

    browser_client.post(f"/settings/islands/{island.pk}/rename", {"name": "new"}, **HTMX)

    assert logged(user) == [
        (A.ISLAND_RENAMED, {"island_id": str(island.pk), "before": "old", "after": "new"})
    ]


def test_unpairing_an_island_with_a_key_logs_its_credentials_revoked(browser_client, user):
    island = IslandFactory(owner=user, name="rig", nkey="UABC")

    browser_client.post(f"/settings/islands/{island.pk}/unpair", **HTMX)

    about = {"island_id": str(island.pk), "name": "rig"}
    assert logged(user) == [
        (A.ISLAND_UNPAIRED, about),
        (A.CREDENTIALS_REVOKED, {**about, "nkey": "UABC"}),
    ]


def test_nobody_logs_anything_on_another_users_island(browser_client, other_user):
    island = IslandFactory(owner=other_user)

    browser_client.post(f"/settings/islands/{island.pk}/unpair", **HTMX)

    assert not AuditEntry.objects.filter(account=other_user).exists()
