"""Desktop pairing end to end: the real agent asks for a code over NATS, a signed-in person
types it at /pair on the live server, checks the confirmation and confirms; the agent
learns it from ``host.{id}.paired``, and on its next start hears "already paired"."""

import html
import re
import uuid

import httpx

from compute.models import Island
from pairing.models import PairingAttempt
from sail.client import sail
from tests.e2e.conftest import PASSWORD, eventually, registered

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def field(page: str, name: str) -> str:
    """The text of the ``data-field`` element ``name`` of a page."""
    match = re.search(rf'data-field="{name}">([^<]*)<', page)
    assert match, f"no data-field {name!r} in the page"
    return html.unescape(match.group(1)).strip()


def post_form(browser: httpx.Client, path: str, form_page: str, **data: str) -> httpx.Response:
    token = CSRF.search(form_page)
    assert token, "the form has no CSRF token"
    return browser.post(path, data={"csrfmiddlewaretoken": token.group(1), **data})


def signed_in(url: str, email: str) -> httpx.Client:
    """A browser-like client signed in through the real /login form (session + CSRF)."""
    browser = httpx.Client(base_url=url, timeout=10)
    login = browser.get("/login")
    answer = post_form(browser, "/login", login.text, username=email, password=PASSWORD)
    assert answer.status_code == 302, answer.text[:500]
    assert answer.headers["location"].endswith("/settings")
    return browser


def test_an_island_is_paired_through_the_pair_page_and_the_agent_learns_it(e2e, account, agent):
    user, _ = account
    island_agent = agent("studio-pc")
    code = island_agent.pairing_code()
    island_agent.wait_for_line(r"Enter this code at http://\S+/pair")
    registered(island_agent)
    assert island_agent.state()["paired"] is False

    browser = signed_in(e2e.url, user.email)
    try:
        form = browser.get("/pair")
        assert form.status_code == 200
        # Typed in lower case: the page upper-cases it, and so does the server.
        confirm = post_form(browser, "/pair", form.text, code=code.lower())
        assert confirm.status_code == 200, confirm.text[:500]
        assert "Pair this Island?" in confirm.text
        island = Island.objects.get(pk=island_agent.host_id)
        assert island.owner is None  # nothing is bound before the confirmation
        assert field(confirm.text, "name") == "studio-pc"
        assert field(confirm.text, "cpu") == str(island.capabilities["cpu_cores"])
        assert field(confirm.text, "ram") not in ("", "—")
        assert field(confirm.text, "region") == "eu-west"
        assert field(confirm.text, "agent-version") == island.agent_version != ""

        paired = post_form(browser, "/pair/confirm", confirm.text, code=code)
        assert paired.status_code == 200, paired.text[:500]
        assert "studio-pc" in paired.text
    finally:
        browser.close()

    island.refresh_from_db()
    assert island.owner_id == user.pk
    assert island.paired_at is not None
    line = island_agent.wait_for_line(r"Paired with account (\S+) — this Island is ready")
    assert line.group(1) == str(user.pk)
    state = island_agent.state()
    assert state["paired"] is True
    assert state["account_id"] == str(user.pk)
    assert state["host_id"] == str(island.pk)
    outcomes = set(PairingAttempt.objects.values_list("outcome", flat=True))
    assert {"previewed", "paired"} <= outcomes

    before = eventually(lambda: island_agent.island().last_heartbeat_at)
    island_agent.restart()
    island_agent.wait_for_line("Connected and registered")
    eventually(lambda: island_agent.island().last_heartbeat_at > before)
    assert not island_agent.printed("Pairing code")
    assert island_agent.state()["paired"] is True


def test_a_restarted_agent_whose_state_was_lost_hears_already_paired(e2e, account, agent):
    """The coordinator, not the Island's file, knows the binding: an Island that forgot
    it asks for a code, is told "already paired", and records it."""
    user, _ = account
    island_agent = agent("basement-box")
    code = island_agent.pairing_code()
    registered(island_agent)
    from pairing import services as pairing

    pairing.confirm_pairing(code=code, user=user, ip="127.0.0.1")
    island_agent.wait_for_line("Paired with account")
    island_agent.stop()
    state = island_agent.state()
    (island_agent.state_dir / "state.json").write_text(
        f'{{"host_id": "{state["host_id"]}", "paired": false}}'
    )

    island_agent.start()
    island_agent.wait_for_line("already paired with an account")
    assert not island_agent.printed("Pairing code")
    assert island_agent.state()["paired"] is True
    assert Island.objects.get(pk=state["host_id"]).owner_id == user.pk


def test_a_field_island_whose_pairing_request_overtook_its_registration_shows_its_name(
    e2e, account, agent, field_url
):
    """A field Island (the shared user) registers and asks for a code separately: the
    request is answered at once, the registration goes through JetStream and a worker.
    The row the request created must still get the Island's name."""
    user, _ = account
    host_id = str(uuid.uuid4())
    reply = sail.request("field.coordinator.hosts.pairing", {"host_id": host_id}, timeout=5)
    assert reply["success"] is True
    assert Island.objects.get(pk=host_id).name == ""

    island_agent = agent("attic-server", host_id=host_id, coordinator={"nats_url": field_url})
    assert island_agent.pairing_code() == reply["code"]  # the same live code
    eventually(lambda: Island.objects.filter(pk=host_id, name="attic-server").exists())
    browser = signed_in(e2e.url, user.email)
    try:
        form = browser.get("/pair")
        confirm = post_form(browser, "/pair", form.text, code=reply["code"])
        assert field(confirm.text, "name") == "attic-server"
    finally:
        browser.close()
