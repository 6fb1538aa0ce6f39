"""The account and API-key journey in a real headless chromium against the live server."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser_fixtures import login

pytestmark = pytest.mark.browser

EMAIL = "lin@example.com"
PASSWORD = "a long browser passphrase"


def test_a_visitor_signs_up_logs_in_creates_a_key_once_and_revokes_it(live, page):
    page.goto(f"{live.url}/")
    page.get_by_role("link", name="Sign up").click()
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(f"{live.url}/settings")
    expect(page.get_by_text("Welcome! Your account starts with")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{live.url}/")
    login(page, live, EMAIL, PASSWORD)

    # Create: the full key appears once, in a focused field, with the warning and a copy button.
    page.get_by_label("Key name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    new_key = page.get_by_label("Your new API key")
    expect(new_key).to_be_focused()
    expect(new_key).to_have_value(re.compile(r"^ak_[a-z0-9]{40}$"))
    expect(page.get_by_text("It is only shown once", exact=False)).to_be_visible()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied")).to_be_visible()
    raw = new_key.input_value()
    assert live.client(raw).get("/account").status_code == 200

    page.reload()
    expect(page.get_by_label("Your new API key")).to_have_count(0)
    assert raw not in page.content()
    row = page.get_by_role("row", name=re.compile("laptop"))
    expect(row).to_contain_text(raw[:8])

    # Revoke: a confirmation first, then the key is gone and refused at once.
    page.get_by_role("link", name="Revoke laptop").click()
    page.get_by_role("button", name="Yes, revoke key").click()
    expect(page.get_by_text("Key “laptop”")).to_contain_text("revoked")
    expect(page.get_by_role("row", name=re.compile("laptop"))).to_have_count(0)
    assert live.client(raw).get("/account").status_code == 401
