"""The pages on a phone's width (390 px) in a real headless chromium: every column of the
settings tables in view, and the navigation behind a Menu button."""

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser_fixtures import login

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


def assert_fully_visible(page: Page, locator: Locator) -> None:
    """In view once scrolled to, and not clipped by a table that scrolls sideways."""
    locator.scroll_into_view_if_needed()
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"]
    expect(locator).to_be_in_viewport(ratio=1)


def no_sideways_scrolling(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.fixture
def phone(live, page, user, api_key) -> Page:
    """``user`` (with one API key, "test") logged in on a 390 px wide page."""
    login(page, live, "ada@example.com", "correct horse battery")
    page.set_viewport_size(PHONE)
    return page


def test_the_keys_table_shows_every_key_with_its_revoke_button(live, phone):
    phone.goto(f"{live.url}/settings")
    key = phone.get_by_role("row", name=re.compile("test"))
    for label in ("Key", "Scopes", "Created", "Last used"):
        assert_fully_visible(phone, key.locator(f'td[data-label="{label}"]'))
    expect(key.locator('td[data-label="Last used"]')).to_have_text("Never")
    revoke = phone.get_by_role("link", name="Revoke test")
    assert_fully_visible(phone, revoke)
    assert no_sideways_scrolling(phone)

    revoke.click()
    confirm = phone.get_by_role("button", name="Yes, revoke key")
    assert_fully_visible(phone, confirm)
    confirm.click()
    expect(phone.get_by_text("You have no API keys yet.")).to_be_visible()


def test_the_credit_history_shows_every_column_of_an_entry(live, phone):
    phone.goto(f"{live.url}/settings")
    entry = phone.locator("#credit-history tr[data-kind=grant]")
    expect(entry).to_be_visible()
    for field in ("amount", "balance-after", "held-after"):
        assert_fully_visible(phone, entry.locator(f"[data-field={field}]"))
    for label in ("Date (UTC)", "Kind", "Amount", "Balance after", "Held after"):
        expect(entry.locator(f'td[data-label="{label}"]')).to_have_count(1)
    expect(entry).to_contain_text("Starting grant")
    assert no_sideways_scrolling(phone)


def test_the_navigation_opens_from_a_menu_button(live, page):
    page.set_viewport_size(PHONE)
    page.goto(f"{live.url}/")
    menu = page.get_by_role("button", name="Menu")
    quickstart = page.get_by_role("navigation", name="Main").get_by_role("link", name="Quickstart")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(quickstart).to_be_hidden()

    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    assert_fully_visible(page, quickstart)
    quickstart.click()
    page.wait_for_url(re.compile(r"/quickstart$"))

    page.get_by_role("button", name="Menu").click()
    page.get_by_role("button", name="Menu").click()
    expect(page.get_by_role("link", name="Sign up")).to_be_hidden()


def test_a_wide_screen_shows_the_links_without_a_menu_button(live, page):
    page.goto(f"{live.url}/")
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    expect(page.get_by_role("link", name="Quickstart").first).to_be_visible()
