"""The Chat page (/chat): signed in only, LLM Cargos only, and, in a real browser against
the whole coordinator and an Island played by the test, an answer streamed in with the
Island's name, the time to first token and the tokens per second."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from compute.models import Job
from compute.seed import seed_cargos
from compute.services import waiting
from portal import services
from tests.browser_fixtures import login
from tests.compute.fake_island import FakeIsland
from tests.factories import IslandFactory

PASSWORD = "correct horse battery"
# What the demo Island of `make run` offers: no GPU.
NO_GPU = {"cpu_cores": 4, "ram_mb": 16384, "gpu_vram_mb": 0}


def test_the_chat_page_offers_the_llm_cargos_only(client, user):
    seed_cargos()
    client.force_login(user)
    page = client.get(reverse("chat")).content.decode()
    assert '<option value="llm-chat" selected' in page
    assert 'value="gguf-mistral-7b"' in page
    assert 'value="sdxl"' not in page
    assert 'href="/chat"' in page  # in the site navigation


def test_the_picker_marks_the_cargos_no_online_island_can_run(client, user):
    seed_cargos()
    IslandFactory(capabilities=NO_GPU)
    client.force_login(user)
    page = client.get(reverse("chat")).content.decode()
    assert (
        '<option value="gguf-mistral-7b" data-unavailable>Mistral 7B Instruct (gguf-mistral-7b)'
        " — no online Island can run this Cargo</option>"
    ) in page
    assert '<option value="llm-chat" selected>LLM Chat (Mistral 7B) (llm-chat)</option>' in page
    assert "waits in the queue for an Island for up to 5 minutes" in page


def test_the_api_refuses_a_session_post_without_the_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(
        "/api/v1/chat/completions",
        {"model": "llm-chat", "messages": [{"role": "user", "content": "Hi"}]},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.browser
def test_an_answer_streams_in_with_the_island_and_the_speed(stack, page):
    seed_cargos()
    services.sign_up(email="ada@example.com", password=PASSWORD)
    host = IslandFactory(name="blue-lagoon", max_concurrent_jobs=10)
    island = FakeIsland(str(host.pk), token_delay=0.02).start()
    try:
        login(page, stack.server, "ada@example.com", PASSWORD)
        page.goto(f"{stack.url}/chat")
        page.get_by_label("Cargo").select_option("llm-chat")
        page.get_by_label("Message").fill("Tell me about islands")
        page.get_by_role("button", name="Send").click()

        answer = page.locator("[data-turn=assistant][data-done]")
        # The first job may wait for the coordinator to see the new Island.
        expect(answer).to_contain_text("You said: Tell me about islands", timeout=20_000)
        expect(page.locator("[data-stat-island]")).to_have_text("blue-lagoon")
        expect(page.locator("[data-stat-ttft]")).to_have_text(re.compile(r"^\d+ ms$"))
        expect(page.locator("[data-stat-rate]")).to_have_text(re.compile(r"^\d+(\.\d)?$"))
        expect(page.locator("[data-stat-tokens]")).to_have_text("6")

        # A second turn carries the conversation so far.
        page.get_by_label("Message").fill("And more")
        page.get_by_role("button", name="Send").click()
        expect(page.locator("[data-turn=assistant][data-done]")).to_have_count(2, timeout=20_000)
        messages = island.assignments[-1]["input"]["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    finally:
        island.stop()


@pytest.mark.browser
def test_an_unknown_cargo_shows_the_apis_message(live, page):
    seed_cargos()
    services.sign_up(email="ada@example.com", password=PASSWORD)
    login(page, live, "ada@example.com", PASSWORD)
    page.goto(f"{live.url}/chat")
    page.locator("[data-chat-model]").evaluate(
        "select => { select.add(new Option('gone', 'gone-cargo')); select.value = 'gone-cargo'; }"
    )
    page.get_by_label("Message").fill("Hello?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("[data-chat-error]")).to_have_text("Unknown workload: gone-cargo")


@pytest.mark.browser
def test_a_message_that_waits_says_why_and_send_looks_disabled_until_it_ends(live, page):
    """GIVEN only an Island without a GPU online WHEN a message goes to a Cargo that needs
    6 GB of VRAM (marked in the picker) THEN its answer says why it waits and Send is
    disabled and looks it; WHEN the wait passes its limit THEN the error says why, and
    no empty answer is left."""
    seed_cargos()
    services.sign_up(email="ada@example.com", password=PASSWORD)
    IslandFactory(capabilities=NO_GPU)
    login(page, live, "ada@example.com", PASSWORD)
    page.goto(f"{live.url}/chat")
    send = page.get_by_role("button", name="Send")
    note = page.locator("[data-chat-availability]")
    expect(note).to_be_hidden()  # llm-chat, the default, runs on the Island
    assert send.evaluate("b => getComputedStyle(b).opacity") == "1"

    page.get_by_label("Cargo").select_option("gguf-mistral-7b")
    expect(page.locator("option[value=gguf-mistral-7b]")).to_have_attribute("data-unavailable", "")
    expect(page.locator("option[value=gguf-mistral-7b]")).to_contain_text(
        "no online Island can run this Cargo"
    )
    expect(note).to_be_visible()
    expect(note).to_contain_text("waits in the queue for an Island for up to 5 minutes")
    page.get_by_label("Message").fill("Hello?")
    send.click()

    waiting_note = page.locator("[data-turn=assistant] [data-chat-waiting]")
    expect(waiting_note).to_have_text(
        "Waiting for an Island: no online Island can run this Cargo."
        " It gives up after 5 minutes in the queue."
    )
    expect(send).to_be_disabled()
    assert float(send.evaluate("b => getComputedStyle(b).opacity")) < 1
    assert send.evaluate("b => getComputedStyle(b).cursor") == "not-allowed"

    waiting.expire_waiting(now=timezone.now() + timedelta(days=2))
    expect(page.locator("[data-chat-error]")).to_have_text(
        "No Island took the job within 300 s: no online Island can run this Cargo"
    )
    expect(send).to_be_enabled()
    expect(page.locator("[data-turn=assistant]")).to_have_count(0)
    expect(page.locator("[data-chat-stats]")).to_be_hidden()
    assert Job.objects.get().status == "timeout"
