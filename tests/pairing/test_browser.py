"""The pairing pages in a real headless chromium against the production ASGI app."""

import io
import threading
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import pytest
import zxingcpp
from django.conf import settings
from django.test import Client
from django.utils import timezone
from PIL import Image
from playwright.sync_api import Page, expect

from compute.events import IslandStatus, send_to_user
from compute.models import Island
from pairing import services
from tests.factories import IslandFactory

pytestmark = pytest.mark.browser


def sign_in(page: Page, live, user) -> None:
    """Give the browser the session cookie of ``user``."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live.url}]
    )


def in_thread(function, *args) -> None:
    # Playwright's sync API owns this thread's event loop; async_to_sync needs another.
    worker = threading.Thread(target=function, args=args)
    worker.start()
    worker.join(10)


def test_pairing_a_desktop_island_with_a_lowercase_code(live, page, user, island):
    code = services.request_pairing_code(str(island.pk), key=island.nkey)["code"]
    sign_in(page, live, user)
    page.goto(f"{live.url}/pair")
    field = page.get_by_label("Pairing code")
    field.press_sequentially(f"{code[:3].lower()}-{code[3:].lower()}")
    expect(field).to_have_value(code)
    page.get_by_role("button", name="Continue").click()
    confirm = page.locator("[data-confirm]")
    expect(confirm).to_contain_text("workstation")
    expect(confirm).to_contain_text("RTX 4090")
    expect(confirm).to_contain_text("eu-west")
    page.get_by_role("button", name="Pair this Island").click()
    expect(page.locator("[data-paired]")).to_contain_text("workstation")
    island.refresh_from_db()
    assert island.owner == user


def test_a_wrong_code_gets_a_clear_message(live, page, user, island):
    sign_in(page, live, user)
    page.goto(f"{live.url}/pair")
    page.get_by_label("Pairing code").fill("ZZZZZZ")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("[data-pair-error]")).to_contain_text("not valid")


def test_the_mobile_page_shows_a_qr_code_and_updates_live_when_the_phone_claims(live, page, user):
    sign_in(page, live, user)
    page.goto(f"{live.url}/pair/mobile")
    code = page.locator("[data-code]").inner_text().strip()
    png = page.locator("[data-qr] svg").screenshot()
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
    expected = "archipelago://pair?" + urlencode({"code": code, "coordinator": settings.PUBLIC_URL})
    assert [result.text for result in decoded] == [expected]
    expect(page.locator("[data-remaining]")).to_have_text("9:59", timeout=3000)

    expect(page.locator("#mobile-pairing")).to_have_attribute("data-socket", "open")
    page.evaluate("window.__notReloaded = true")
    body = {"code": code, "device_name": "Pixel 8", "platform": "android"}
    response = httpx.post(f"{live.url}/api/v1/pairing/mobile/claim", json=body, timeout=10)
    assert response.status_code == 201
    expect(page.locator("[data-status]")).to_have_text("Paired: Pixel 8 · ONNX Runtime")
    expect(page.locator("[data-qr]")).to_be_hidden()
    assert page.evaluate("window.__notReloaded") is True


def test_an_expired_mobile_code_offers_a_new_one(live, page, user):
    sign_in(page, live, user)
    page.clock.install()
    page.goto(f"{live.url}/pair/mobile")
    first = page.locator("[data-code]").inner_text()
    page.clock.run_for(601_000)
    expect(page.locator("[data-expired]")).to_be_visible()
    page.get_by_role("link", name="New code").click()
    expect(page.locator("[data-code]")).not_to_have_text(first)


def test_your_islands_in_settings_shows_a_card_that_refreshes_by_button_and_live(live, page, user):
    island = IslandFactory(owner=user, name="big-rig", jobs_completed=3)
    sign_in(page, live, user)
    page.goto(f"{live.url}/settings")
    card = page.locator(f"#island-{island.pk}")
    expect(card.locator("[data-field=status]")).to_have_text("Online")
    expect(card.locator("[data-field=jobs-completed]")).to_have_text("3")

    Island.objects.filter(pk=island.pk).update(jobs_completed=4)
    page.get_by_role("button", name="Refresh Islands").click()
    expect(card.locator("[data-field=jobs-completed]")).to_have_text("4")

    # Heartbeats stop: the bridge's event makes the page fetch the cards again.
    expect(page.locator("body")).to_have_attribute("data-islands-socket", "open")
    stale = timezone.now() - timedelta(minutes=5)
    Island.objects.filter(pk=island.pk).update(last_heartbeat_at=stale, status="offline")
    event = IslandStatus(island_id=str(island.pk), status="offline", last_heartbeat_at=None)
    in_thread(send_to_user, user.pk, event)
    expect(card.locator("[data-field=status]")).to_have_text("Offline")
    expect(page.locator("#your-islands-list")).to_have_count(1)


def test_renaming_and_unpairing_from_the_card(live, page, user):
    island = IslandFactory(owner=user, name="big-rig")
    sign_in(page, live, user)
    page.goto(f"{live.url}/settings/islands")
    card = page.locator(f"#island-{island.pk}")
    card.get_by_text("Rename").click()
    card.get_by_label("New name").fill("render-box")
    card.get_by_role("button", name="Save").click()
    expect(card.locator("[data-field=name]")).to_have_text("render-box")

    page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name="Unpair").click()
    expect(page.locator("[data-no-islands]")).to_be_visible()
    island.refresh_from_db()
    assert island.owner is None
    assert island.name == "render-box"
