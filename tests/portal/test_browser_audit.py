"""The account's activity on /settings, in a real headless chromium against the live server."""

import pytest
from playwright.sync_api import expect

from portal import services
from tests.browser_fixtures import login

pytestmark = pytest.mark.browser

EMAIL = "ida@example.com"
PASSWORD = "a long browser passphrase"


def test_settings_shows_the_sign_in_and_the_key_just_created_in_the_activity(live, page):
    services.sign_up(email=EMAIL, password=PASSWORD)
    login(page, live, EMAIL, PASSWORD)

    page.get_by_label("Key name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    page.goto(f"{live.url}/settings")

    activity = page.locator("#audit-log")
    expect(activity.get_by_role("heading", name="Account activity")).to_be_visible()
    expect(activity.locator("li").first).to_contain_text("API key created")
    expect(activity.locator("li").nth(1)).to_contain_text("Signed In")
    expect(activity.locator("li").nth(1)).to_contain_text("from 127.0.0.1")
