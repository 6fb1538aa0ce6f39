"""The Exchange page and the credit history in a real headless chromium against the
production ASGI app."""

import re
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from billing import services
from compute.models import RateSnapshot
from portal import services as accounts
from tests.browser_fixtures import login
from tests.factories import CargoFactory

pytestmark = pytest.mark.browser


def snapshot(cargo, *, ago: timedelta, avg: str) -> None:
    price = D(avg)
    RateSnapshot.objects.create(
        cargo=cargo,
        avg_price=price,
        min_price=price * D("0.8"),
        max_price=price * D("1.2"),
        num_hosts=3,
        created_at=timezone.now() - ago,
    )


def test_the_exchange_draws_a_price_chart_and_switches_windows_in_place(live, page: Page):
    chat = CargoFactory(slug="llm-chat", name="LLM Chat")
    snapshot(chat, ago=timedelta(days=3), avg="0.03")
    snapshot(chat, ago=timedelta(hours=3), avg="0.02")
    snapshot(chat, ago=timedelta(minutes=5), avg="0.01")

    page.goto(f"{live.url}/exchange")

    expect(page.locator('#rates tr[data-cargo="llm-chat"] [data-field="avg"]')).to_have_text(
        "0.0100"
    )
    chart = page.get_by_role("img", name="LLM Chat: price per job over the last 24 hours")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box["width"] > 250
    assert box["height"] > 80
    expect(page.locator('figure[data-cargo="llm-chat"] polyline.avg')).to_be_visible()
    page.locator('figure[data-cargo="llm-chat"] summary').click()
    expect(page.locator('figure[data-cargo="llm-chat"] tbody tr')).to_have_count(2)

    page.evaluate("window.notReloaded = true")
    page.get_by_role("link", name="7d").click()

    expect(page).to_have_url(re.compile(r"/exchange\?window=7d$"))
    expect(
        page.get_by_role("img", name="LLM Chat: price per job over the last 7 days")
    ).to_be_visible()
    expect(page.get_by_role("link", name="7d")).to_have_attribute("aria-current", "true")
    page.locator('figure[data-cargo="llm-chat"] summary').click()
    expect(page.locator('figure[data-cargo="llm-chat"] tbody tr')).to_have_count(3)
    assert page.evaluate("window.notReloaded") is True  # htmx swapped only the history


def test_the_credit_history_on_settings_shows_a_new_grant_and_pages(live, page: Page):
    user = accounts.sign_up(email="ada@example.com", password="correct horse battery")
    login(page, live, "ada@example.com", "correct horse battery")

    services.grant(user=user, amount=D("42.5"), reason="Welcome bonus", idempotency_key="wb")
    page.goto(f"{live.url}/settings")

    history = page.locator("#credit-history")
    newest = history.locator("tbody tr[data-entry]").first
    expect(newest).to_contain_text("Welcome bonus")
    expect(newest.locator('[data-field="amount"]')).to_have_text("+42.50")
    expect(newest.locator('[data-field="balance-after"]')).to_have_text("10,042.50")
    expect(history.locator('[data-field="available"]')).to_have_text("10,042.50")
    expect(history).to_contain_text("Payouts of earnings unlock at +10 karma per Island")

    for n in range(20):
        services.grant(user=user, amount=D(1), reason=f"Bonus {n}", idempotency_key=f"b{n}")
    page.reload()
    expect(history.locator("tbody tr[data-entry]")).to_have_count(20)
    history.get_by_role("link", name="Older →").click()

    expect(history).to_contain_text("Page 2 of 2")
    expect(history.locator("tbody tr[data-entry]")).to_have_count(2)
    expect(history.locator("tbody")).to_contain_text("Starting grant")
    assert page.url == f"{live.url}/settings"
