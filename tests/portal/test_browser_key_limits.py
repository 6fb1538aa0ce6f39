"""A key's limits and usage chart on /settings in a real headless chromium: caps edited
in the key's row, then enforced by the API; the chart shows the key's jobs."""

import re
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from portal import services
from portal.models import ApiKey, ApiKeyDay
from tests.browser_fixtures import login
from tests.factories import CargoFactory

pytestmark = pytest.mark.browser


def test_a_user_caps_a_key_sees_it_enforced_and_sees_its_usage_chart(live, page):
    user = services.sign_up(email="lin@example.com", password="a long browser passphrase")
    key, raw = services.create_api_key(user=user, name="ci")
    CargoFactory(slug="capped-chat", runtime_type="container", price_per_job=Decimal("0.01"))
    ApiKeyDay.objects.create(key=key, day=timezone.now().date(), jobs=4,
                             credits_spent=Decimal("0.04"))  # fmt: skip
    with live.client(raw) as client:  # the server now holds the key in its cache
        assert client.get("/account").status_code == 200
    login(page, live, "lin@example.com", "a long browser passphrase")

    row = page.locator(f"#key-{key.pk}")
    chart = row.get_by_role("img", name=re.compile("Usage over 30 days"))
    expect(chart).to_have_attribute("aria-label", "Usage over 30 days: 4 jobs, 0.04 credits")
    expect(chart.locator("rect")).to_have_count(30)
    expect(row.locator('td[data-label="Limits"]')).to_have_text("none")

    row.get_by_role("link", name="Limits of ci").click()
    form_row = page.locator(f"#key-{key.pk}")
    form_row.get_by_label("Credits per day").fill("0.045")
    form_row.get_by_label("Allowed Cargos").fill("capped-chat")
    form_row.get_by_role("button", name="Save limits").click()

    expect(page.get_by_text("Limits of “ci” saved.")).to_be_visible()
    limits = page.locator(f"#key-{key.pk}").locator('td[data-label="Limits"]')
    expect(limits).to_contain_text("0.045/day")
    expect(limits).to_contain_text("Cargos: capped-chat")
    assert ApiKey.objects.get(pk=key.pk).spend_cap_day == Decimal("0.045")

    page.get_by_text("Recent changes to your keys").click()
    expect(page.locator("table.key-changes")).to_contain_text("spend_cap_day")

    # The API keeps the caps at once: the server forgot its cached key on the change.
    with live.client(raw) as client:
        body = {"workload": "capped-chat", "input": {"prompt": "Hi"}}
        refused = client.post("/jobs", json=body)
        assert refused.status_code == 402
        assert refused.json()["error"]["code"] == "key_spend_cap"
        other = client.post("/jobs", json={**body, "workload": "another"})
        assert other.json()["error"]["code"] == "cargo_not_allowed"
