"""POST /api/v1/pairing/mobile/claim: the phone's side of mobile pairing."""

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from compute.models import Island
from pairing import mobile as pairing_mobile
from pairing.models import MobilePairingSession, PairingAttempt

URL = "/api/v1/pairing/mobile/claim"


@pytest.fixture
def mobile(user) -> tuple[MobilePairingSession, str]:
    """A live mobile pairing session of ``user`` and its code."""
    return pairing_mobile.start_mobile_session(user=user)


def claim_body(_code: str, /, **overrides) -> dict:
    body = {
        "code": overrides.pop("code", _code),
        "device_name": "Pixel 8",
        "platform": "android",
        "hardware": {"model": "Pixel 8", "cpu_cores": 9, "ram_mb": 8192},
        "runtimes": ["onnx", "nnapi"],
    }
    return {**body, **overrides}


def test_a_claim_creates_an_onnx_island_for_the_sessions_account(anon, user, mobile, settings):
    session, code = mobile
    response = anon.post(URL, claim_body(code), format="json")
    assert response.status_code == 201
    data = response.json()["data"]
    island = Island.objects.get(pk=data["host_id"])
    assert island.owner == user
    assert (island.platform, island.runtimes[0], island.name) == ("android", "onnx", "Pixel 8")
    assert island.capabilities == {"model": "Pixel 8", "cpu_cores": 9, "ram_mb": 8192}
    assert data["account_email"] == user.email
    assert data["nats_url"] == settings.NATS_PUBLIC_URL
    session.refresh_from_db()
    assert session.claimed_at is not None
    assert session.island == island


def test_an_iphone_gets_coreml(anon, mobile):
    response = anon.post(URL, claim_body(mobile[1], platform="ios", runtimes=[]), format="json")
    island = Island.objects.get(pk=response.json()["data"]["host_id"])
    assert island.runtimes == ["coreml"]
    assert island.platform == "ios"


def test_the_token_is_stored_hashed_and_valid_for_30_days(anon, mobile):
    data = anon.post(URL, claim_body(mobile[1]), format="json").json()["data"]
    island = Island.objects.get(pk=data["host_id"])
    assert len(data["token"]) >= 40
    assert island.token_hash == hashlib.sha256(data["token"].encode()).hexdigest()
    assert data["token"] not in island.token_hash
    lifetime = island.token_expires_at - timezone.now()
    assert timedelta(days=29, hours=23) < lifetime <= timedelta(days=30)


def test_a_second_claim_of_the_same_code_fails(anon, mobile):
    assert anon.post(URL, claim_body(mobile[1]), format="json").status_code == 201
    response = anon.post(URL, claim_body(mobile[1], device_name="Thief"), format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "code_used"
    assert Island.objects.count() == 1


def test_an_expired_code_is_refused_with_a_clear_error(anon, mobile):
    MobilePairingSession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = anon.post(URL, claim_body(mobile[1]), format="json")
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "code_expired"
    assert "expired" in response.json()["error"]["message"]


def test_an_unknown_code_is_a_404_and_is_audited(anon, mobile):
    response = anon.post(URL, claim_body("ABCDEFGH"), format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "invalid_code"
    assert PairingAttempt.objects.get().outcome == "wrong"


@pytest.mark.parametrize(
    "overrides",
    [
        {"platform": "windows"},
        {"code": "SHORT"},
        {"device_name": ""},
        {"device_name": "x" * 101},
        {"hardware": {"cpu_cores": "many"}},
        {"hardware": {"secret": 1}},
        {"runtimes": "onnx"},
        {"runtimes": ["ONNX Runtime!"]},
        {"extra": True},
    ],
)
def test_it_rejects_bad_input_with_422(anon, mobile, overrides):
    response = anon.post(URL, claim_body(mobile[1], **overrides), format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert Island.objects.count() == 0


def test_it_rejects_a_body_that_is_not_json(anon, mobile):
    response = anon.post(URL, "code=ABC", content_type="application/json")
    assert response.status_code == 400
    assert "error" in response.json()


def test_wrong_codes_count_against_the_ip_limit(anon, mobile, settings):
    settings.PAIRING_MAX_FAILURES_PER_IP = 2
    for _ in range(2):
        anon.post(URL, claim_body("ABCDEFGH"), format="json")
    response = anon.post(URL, claim_body(mobile[1]), format="json")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "rate_limited"


def test_claims_are_rate_limited_per_ip(anon, db, settings):
    settings.PAIRING_CLAIMS_PER_IP = 3
    statuses = [anon.post(URL, {"platform": "nope"}, format="json").status_code for _ in range(4)]
    assert statuses == [422, 422, 422, 429]


def test_reloading_the_page_does_not_pile_up_live_codes(user):
    for _ in range(8):
        pairing_mobile.start_mobile_session(user=user)
    live = MobilePairingSession.objects.filter(expires_at__gt=timezone.now())
    assert live.count() == pairing_mobile.MAX_LIVE_MOBILE_SESSIONS
