"""The coordinator.hosts.pairing reply and the pairing services."""

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from compute.models import Island
from pairing import codes, services
from pairing.models import PairingAttempt, PairingCode

CODE = re.compile(r"[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{6}")


def test_the_alphabet_has_32_symbols_without_lookalikes():
    assert len(set(codes.ALPHABET)) == 32
    assert not set("IO01") & set(codes.ALPHABET)


def test_it_replies_with_a_six_character_code_and_the_pair_url(island, settings):
    reply = services.request_pairing_code(str(island.pk), key=island.nkey)
    assert reply["success"] is True
    assert CODE.fullmatch(reply["code"])
    assert 595 <= reply["expires_in_seconds"] <= 600
    assert reply["pair_url"] == f"{settings.PUBLIC_URL}/pair"


def test_codes_use_the_whole_alphabet_and_nothing_else(db):
    seen = set()
    for _ in range(300):
        seen |= set(codes.derive_code(codes.new_seed()))
    assert seen == set(codes.ALPHABET)


def test_it_never_stores_the_code_in_clear(island, code):
    row = PairingCode.objects.get(island=island)
    values = [str(getattr(row, f.attname)) for f in PairingCode._meta.fields]
    assert not any(code in value for value in values)
    assert row.code_hash == codes.code_hash(code)


def test_it_returns_the_same_live_code_on_a_repeated_request(island, code):
    again = services.request_pairing_code(str(island.pk), key=island.nkey)
    assert again["code"] == code
    assert PairingCode.objects.filter(island=island).count() == 1


def test_it_issues_a_new_code_once_the_old_one_expired(island, code):
    PairingCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    again = services.request_pairing_code(str(island.pk), key=island.nkey)
    assert again["code"] != code
    assert again["expires_in_seconds"] > 590


def test_it_answers_already_paired_for_a_bound_island(island, user):
    island.owner = user
    island.save()
    assert services.request_pairing_code(str(island.pk), key=island.nkey) == {
        "success": False,
        "error": "already paired",
        "account_id": str(user.pk),  # extension: what the Island keeps in its state
        "paired_at": None,
    }


def test_it_refuses_a_host_id_that_is_not_a_uuid(db):
    reply = services.request_pairing_code("not-a-uuid")
    assert reply["success"] is False
    assert "host_id" in reply["error"]


def test_it_creates_an_unpaired_island_for_an_unknown_host(db):
    host_id = uuid.uuid4()
    reply = services.request_pairing_code(str(host_id))
    assert reply["success"] is True
    assert Island.objects.get(pk=host_id).owner is None


def test_confirming_binds_the_island_and_spends_the_code(
    island, code, user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.confirm_pairing(code=code.lower(), user=user, ip="10.0.0.1")
    island.refresh_from_db()
    assert island.owner == user
    assert island.paired_at is not None
    row = PairingCode.objects.get(island=island)
    assert row.used_at is not None
    assert row.used_by == user
    assert len(callbacks) == 3  # host.{id}.paired, its key's new connection, island.paired
    assert PairingAttempt.objects.filter(outcome="paired", island=island, ip="10.0.0.1").exists()


def test_a_code_works_only_once(island, code, user, other_user):
    services.confirm_pairing(code=code, user=user, ip="10.0.0.1")
    with pytest.raises(services.PairingError) as error:
        services.confirm_pairing(code=code, user=other_user, ip="10.0.0.2")
    assert error.value.outcome == "used"
    island.refresh_from_db()
    assert island.owner == user


def test_an_expired_code_is_refused(island, code, user):
    PairingCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(services.PairingError) as error:
        services.preview_pairing(code=code, user=user, ip="10.0.0.1")
    assert error.value.outcome == "expired"
    assert "expired" in error.value.message


def test_a_paired_island_gets_already_paired_on_its_next_request(island, code, user):
    services.confirm_pairing(code=code, user=user, ip="10.0.0.1")
    assert (
        services.request_pairing_code(str(island.pk), key=island.nkey)["error"] == "already paired"
    )


def test_unpairing_frees_the_island_for_a_new_pairing(island, code, user):
    services.confirm_pairing(code=code, user=user, ip="10.0.0.1")
    island.refresh_from_db()
    services.unpair_island(island=island)
    island.refresh_from_db()
    assert island.owner is None
    assert island.paired_at is None
    reply = services.request_pairing_code(str(island.pk), key=island.nkey)
    assert reply["success"] is True
    assert reply["code"] != code
