"""/pair with the test client: the confirmation step, clear refusals, limits and audit."""

import time
from datetime import timedelta
from types import SimpleNamespace

import orjson
import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from core import windows
from pairing import codes, services
from pairing.models import PairingAttempt, PairingCode
from portal import services as portal_services
from sail import subjects
from sail.client import sail

MOBILE_CLAIM = "/api/v1/pairing/mobile/claim"


def mobile_claim(code: str) -> dict:
    return {"code": code, "device_name": "Pixel 8", "platform": "android", "hardware": {}}


def wrong_code(code: str) -> str:
    """A well-formed code that is not ``code``."""
    return "ZZZZZZ" if code != "ZZZZZZ" else "YYYYYY"


def test_it_shows_the_form(browser_client):
    response = browser_client.get("/pair")
    assert response.status_code == 200
    assert b'autocapitalize="characters"' in response.content


def test_a_valid_code_leads_to_a_confirmation_step_with_the_island_details(
    browser_client, island, code
):
    response = browser_client.post("/pair", {"code": code.lower()})
    assert response.status_code == 200
    page = response.content.decode()
    for detail in ("workstation", "RTX 4090", "24 GB", "16", "64 GB", "eu-west", "0.4.2"):
        assert detail in page
    island.refresh_from_db()
    assert island.owner is None  # not yet: the user has to confirm


def test_confirming_pairs_the_island_and_publishes_paired_on_nats(
    browser_client, island, code, user, django_capture_on_commit_callbacks
):
    subject = subjects.host(str(island.pk), "paired")
    subscription = sail.call(lambda nc: nc.subscribe(subject))
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = browser_client.post("/pair/confirm", {"code": code})
        assert response.status_code == 200
        assert b"Paired" in response.content
        message = sail.call(lambda nc: subscription.next_msg(timeout=3))
    finally:
        sail.call(lambda nc: subscription.unsubscribe())
    body = orjson.loads(message.data)
    island.refresh_from_db()
    assert island.owner == user
    assert body == {
        "host_id": str(island.pk),
        "account_id": str(user.pk),
        "paired_at": island.paired_at.isoformat(),
    }


@pytest.mark.parametrize(
    ("spoil", "status", "message"),
    [
        ("wrong", 404, "not valid"),
        ("expired", 410, "has expired"),
        ("used", 409, "already been used"),
    ],
)
def test_it_explains_wrong_expired_and_used_codes(
    browser_client, island, code, other_user, spoil, status, message
):
    if spoil == "wrong":
        code = wrong_code(code)
    elif spoil == "expired":
        PairingCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        PairingCode.objects.update(used_at=timezone.now(), used_by=other_user)
    response = browser_client.post("/pair", {"code": code})
    assert response.status_code == status
    assert message in response.content.decode()
    assert PairingAttempt.objects.get().outcome == spoil


def test_it_rejects_malformed_codes_without_looking_them_up(browser_client, db):
    for typed in ("abc", "ABCDEFG", "AB CD!E", "A0B1CD"):
        response = browser_client.post("/pair", {"code": typed})
        assert response.status_code == 400
    assert set(PairingAttempt.objects.values_list("outcome", flat=True)) == {"invalid_format"}


def test_it_explains_lookalike_characters(browser_client, db):
    response = browser_client.post("/pair", {"code": "OOII10"})
    assert "never contain I, O, 0 or 1" in response.content.decode()


def test_it_stops_an_account_after_ten_wrong_codes_even_for_a_valid_one(
    browser_client, island, code
):
    for _ in range(10):
        assert browser_client.post("/pair", {"code": wrong_code(code)}).status_code == 404
    response = browser_client.post("/pair", {"code": code})
    assert response.status_code == 429
    assert "Too many wrong codes" in response.content.decode()
    assert int(response["Retry-After"]) > 0
    assert PairingAttempt.objects.filter(outcome="wrong").count() == 10
    assert PairingAttempt.objects.filter(outcome="rate_limited").count() == 1


def test_the_limit_is_per_account(browser_client, other_client, island, code):
    for _ in range(10):
        browser_client.post("/pair", {"code": wrong_code(code)})
    assert other_client.post("/pair", {"code": code}).status_code == 200


def test_it_limits_wrong_codes_per_ip_across_accounts(settings, island, code, db):
    settings.PAIRING_MAX_FAILURES_PER_IP = 3
    for n in range(3):
        client = Client(REMOTE_ADDR="203.0.113.7")
        client.force_login(portal_services.sign_up(email=f"u{n}@example.com", password=None))
        client.post("/pair", {"code": wrong_code(code)})
    fresh = Client(REMOTE_ADDR="203.0.113.7")
    fresh.force_login(portal_services.sign_up(email="fresh@example.com", password=None))
    assert fresh.post("/pair", {"code": code}).status_code == 429
    elsewhere = Client(REMOTE_ADDR="203.0.113.8")
    elsewhere.force_login(portal_services.sign_up(email="far@example.com", password=None))
    assert elsewhere.post("/pair", {"code": code}).status_code == 200


def signed_in(email: str, ip: str) -> Client:
    """A test client of a new account, from ``ip``."""
    client = Client(REMOTE_ADDR=ip)
    client.force_login(portal_services.sign_up(email=email, password=None))
    return client


def test_past_the_total_limit_only_those_who_have_failed_are_stopped(settings, island, code, db):
    settings.PAIRING_MAX_FAILURES_TOTAL = 2
    for n in range(2):
        signed_in(f"u{n}@example.com", f"198.51.100.{n}").post("/pair", {"code": wrong_code(code)})

    failed_address = signed_in("again@example.com", "198.51.100.0")
    refused = failed_address.post("/pair", {"code": code})
    fresh = signed_in("late@example.com", "198.51.100.99")
    first, second = (fresh.post("/pair", {"code": c}) for c in (wrong_code(code), code))

    assert refused.status_code == 429
    assert 3590 < int(refused["Retry-After"]) <= 3600
    assert first.status_code == 404  # a fresh account on a fresh address may try once...
    assert second.status_code == 429  # ...and is stopped once it has failed


def test_an_attack_that_fills_the_total_limit_does_not_stop_a_legitimate_pairing(
    settings, island, code, db
):
    """GIVEN a stranger who fills the total failure limit with wrong mobile claims from
    many addresses (as the review did: 31 addresses x 30 claims) WHEN someone signed in,
    on an address that has not failed, enters a valid code THEN the Island is paired."""
    settings.PAIRING_MAX_FAILURES_TOTAL = 40
    stranger = APIClient()
    statuses = set()
    for n in range(8):
        for _ in range(settings.PAIRING_MAX_FAILURES_PER_IP // 5):
            response = stranger.post(
                MOBILE_CLAIM, mobile_claim("ABCDEFGH"), format="json", REMOTE_ADDR=f"10.9.0.{n}"
            )
            statuses.add(response.status_code)
    assert statuses == {404, 429}  # the total filled up on the way
    legitimate = signed_in("owner@example.com", "192.0.2.200")

    preview = legitimate.post("/pair", {"code": code})
    confirm = legitimate.post("/pair/confirm", {"code": code})

    assert (preview.status_code, confirm.status_code) == (200, 200)
    island.refresh_from_db()
    assert island.owner.email == "owner@example.com"


def test_a_limit_spent_before_the_hour_is_still_spent_after_it(
    browser_client, island, code, monkeypatch
):
    """GIVEN an account's ten failures in the last seconds before the hour WHEN the hour
    turns THEN it is still refused (fixed hourly counters started afresh on the hour)."""
    hour = (time.time() // 3600 + 1) * 3600
    monkeypatch.setattr(windows, "time", SimpleNamespace(time=lambda: hour - 5))
    for _ in range(10):
        browser_client.post("/pair", {"code": wrong_code(code)})
    monkeypatch.setattr(windows, "time", SimpleNamespace(time=lambda: hour + 5))

    response = browser_client.post("/pair", {"code": code})

    assert response.status_code == 429
    assert int(response["Retry-After"]) == 3600 - 10


def test_it_locks_a_code_looked_up_by_too_many_accounts(island, code, db):
    statuses = []
    for n in range(5):
        client = signed_in(f"u{n}@example.com", f"192.0.2.{n}")
        statuses.append(client.post("/pair", {"code": code}))

    assert [r.status_code for r in statuses] == [200, 200, 200, 423, 423]
    assert "Restart the Island software to get a new code, or wait: the Island shows a new " \
        "one by itself within 10 minutes." in statuses[3].content.decode()  # fmt: skip


def test_the_island_gets_a_new_code_for_a_locked_one_when_it_asks_again(island, code, db):
    """GIVEN a code locked by too many accounts WHEN the Island asks for a code again (as
    the agent does when it restarts, and when its code's time is up) THEN it gets a new
    code, which pairs; the locked one stays refused (the same code came back before)."""
    for n in range(4):
        signed_in(f"u{n}@example.com", f"192.0.2.{n}").post("/pair", {"code": code})

    reply = services.request_pairing_code(str(island.pk), key=island.nkey)
    owner = signed_in("owner@example.com", "192.0.2.200")

    assert reply["success"] is True
    assert reply["code"] != code
    assert owner.post("/pair", {"code": code}).status_code == 423
    assert owner.post("/pair/confirm", {"code": reply["code"]}).status_code == 200
    island.refresh_from_db()
    assert island.owner.email == "owner@example.com"
    assert services.request_pairing_code(str(island.pk), key=island.nkey)["error"] == (
        "already paired"
    )


def test_every_attempt_is_audited_with_user_ip_and_only_a_prefix_of_the_code(
    browser_client, user, island, code
):
    browser_client.post("/pair", {"code": wrong_code(code)}, REMOTE_ADDR="192.0.2.10")
    browser_client.post("/pair", {"code": code}, REMOTE_ADDR="192.0.2.10")
    browser_client.post("/pair/confirm", {"code": code}, REMOTE_ADDR="192.0.2.10")
    rows = list(PairingAttempt.objects.order_by("created_at", "id"))
    assert [r.outcome for r in rows] == ["wrong", "previewed", "paired"]
    assert {r.user for r in rows} == {user}
    assert {r.ip for r in rows} == {"192.0.2.10"}
    assert rows[2].code_prefix == code[:2]
    assert rows[2].island == island
    assert all(len(r.code_prefix) == 2 for r in rows)


def test_the_code_hash_depends_on_the_secret_key(settings):
    before = codes.code_hash("A3X9K2")
    settings.SECRET_KEY = "another secret"
    assert codes.code_hash("A3X9K2") != before


def test_an_expired_code_says_that_the_island_already_shows_a_new_one(browser_client, code):
    PairingCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    page = browser_client.post("/pair", {"code": code}).content.decode()
    assert "codes last 10 minutes" in page
    assert "Your Island has shown a new code by itself" in page
    assert "Restart" not in page
