"""The /settings page: profile, credit balance and API keys, through the Django test client."""

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Balance
from portal.models import ApiKey
from portal.services import create_api_key, hash_key

HTMX = {"HX-Request": "true"}


@pytest.fixture
def signed_in(client, user):
    """The test client, logged in as ``user``."""
    client.force_login(user)
    return client


def new_key_in(html: str) -> str | None:
    found = re.search(r'value="(ak_[a-z0-9]+)"', html)
    return found.group(1) if found else None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "page", ["settings", "api_keys", "your-islands", "credit-history", "pair", "chat", "try-cargo"]
)
def test_a_signed_in_page_sends_strangers_to_the_login_page(client, page):
    response = client.get(reverse(page))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_settings_shows_profile_balance_keys_and_loads_the_islands_section(signed_in, user):
    html = signed_in.get(reverse("settings")).content.decode()

    assert 'value="ada@example.com"' in html
    assert "10,000.00" in html
    assert 'id="api-keys"' in html
    assert 'hx-get="/settings/islands"' in html
    assert 'hx-trigger="load, refresh-islands from:body"' in html
    assert "X-CSRFToken" in html


@pytest.mark.django_db
def test_settings_page_runs_a_fixed_number_of_queries(
    signed_in, user, django_assert_max_num_queries
):
    for n in range(5):
        create_api_key(user=user, name=f"key {n}")

    # 8 with the Sessions section's count of the other sessions and the audit log's
    # entries; none per key.
    with django_assert_max_num_queries(8):
        signed_in.get(reverse("settings"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("available", "amber"), [("9.99", True), ("10", False), ("0", True), ("250", False)]
)
def test_balance_is_amber_under_10_credits(signed_in, user, available, amber):
    Balance.objects.filter(user=user).update(available=Decimal(available))

    html = signed_in.get(reverse("settings")).content.decode()

    assert ('class="balance low"' in html) is amber
    assert ("Your balance is low" in html) is amber


@pytest.mark.django_db
def test_a_new_key_is_shown_in_full_once_and_only_its_hash_is_stored(signed_in, user):
    data = {"name": "laptop", "scopes": ["read", "write"]}
    created = signed_in.post(reverse("api_keys"), data, headers=HTMX).content.decode()

    raw = new_key_in(created)
    assert raw is not None
    assert "only shown once" in created
    assert 'data-copy-target="#new-key-value"' in created
    key = ApiKey.objects.get(user=user)
    assert key.key_hash == hash_key(raw)
    assert key.prefix == raw[:8]
    assert raw not in str(ApiKey.objects.filter(pk=key.pk).values().get())

    later = signed_in.get(reverse("settings")).content.decode()
    assert raw not in later
    assert "laptop" in later
    assert f"{key.prefix}…" in later


@pytest.mark.django_db
def test_a_new_key_can_have_only_the_read_scope(signed_in, user):
    signed_in.post(reverse("api_keys"), {"name": "ro", "scopes": ["read"]}, headers=HTMX)

    assert ApiKey.objects.get(user=user).scopes == ["read"]


@pytest.mark.django_db
def test_a_key_without_a_name_or_scope_gets_errors_next_to_the_fields(signed_in, user):
    html = signed_in.post(reverse("api_keys"), {"name": " "}, headers=HTMX).content.decode()

    assert 'id="id_name_error"' in html
    assert "Give the key a name." in html
    assert "Choose at least one scope." in html
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_the_key_list_shows_name_prefix_scopes_and_last_use(signed_in, user):
    key, _ = create_api_key(user=user, name="ci", scopes=["read"])

    html = signed_in.get(reverse("settings")).content.decode()

    assert "ci" in html
    assert f"<code>{key.prefix}…</code>" in html
    assert '<td data-label="Scopes">read</td>' in html
    assert "Never" in html


@pytest.mark.django_db
def test_revoking_asks_for_confirmation_before_it_revokes(signed_in, user):
    key, _ = create_api_key(user=user, name="ci")

    html = signed_in.get(reverse("api_key_revoke", args=[key.pk]), headers=HTMX).content.decode()

    assert "Yes, revoke key" in html
    key.refresh_from_db()
    assert key.revoked_at is None


@pytest.mark.django_db
def test_a_revoked_key_is_refused_by_the_api_at_once(signed_in, user, anon):
    key, raw = create_api_key(user=user, name="ci")
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert anon.get("/api/v1/account").status_code == 200

    html = signed_in.post(reverse("api_key_revoke", args=[key.pk]), headers=HTMX).content.decode()

    assert "revoked" in html
    assert f"<code>{key.prefix}…</code>" not in html
    assert anon.get("/api/v1/account").status_code == 401


@pytest.mark.django_db
def test_another_users_key_cannot_be_revoked(signed_in, other_user):
    key, _ = create_api_key(user=other_user, name="theirs")

    response = signed_in.post(reverse("api_key_revoke", args=[key.pk]))

    assert response.status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


@pytest.mark.django_db
def test_profile_update_saves_the_display_name(signed_in, user):
    data = {"email": user.email, "display_name": "Ada L."}
    html = signed_in.post(reverse("settings_profile"), data, headers=HTMX).content.decode()

    assert "Saved." in html
    user.refresh_from_db()
    assert user.display_name == "Ada L."


@pytest.mark.django_db
def test_profile_update_refuses_an_email_of_another_account(signed_in, user, other_user):
    data = {"email": other_user.email.upper(), "display_name": ""}
    html = signed_in.post(reverse("settings_profile"), data, headers=HTMX).content.decode()

    assert 'id="id_email_error"' in html
    user.refresh_from_db()
    assert user.email == "ada@example.com"


@pytest.mark.django_db
def test_settings_forms_refuse_a_post_without_the_csrf_token(user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    response = client.post(reverse("api_keys"), {"name": "x", "scopes": ["read"]})

    assert response.status_code == 403
    assert not ApiKey.objects.exists()
