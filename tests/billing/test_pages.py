"""The public Exchange page and the credit history section of /settings."""

import re
import uuid
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import services, settlement
from compute.models import Job, RateSnapshot
from tests.factories import CargoFactory, IslandFactory, JobFactory, UserFactory

HTMX = {"HTTP_HX_REQUEST": "true"}
MINUS, TIMES = "\u2212", "\u00d7"  # as typeset on the pages


def snapshot(cargo, *, ago: timedelta, avg: str, low: str, high: str, hosts: int = 3):
    return RateSnapshot.objects.create(
        cargo=cargo,
        avg_price=D(avg),
        min_price=D(low),
        max_price=D(high),
        num_hosts=hosts,
        created_at=timezone.now() - ago,
    )


@pytest.fixture
def signed_in(user) -> Client:
    """A Django test client signed in as ``user``."""
    client = Client()
    client.force_login(user)
    return client


def chart_of(page: str, slug: str) -> str:
    match = re.search(rf'<figure class="chart" data-cargo="{slug}">(.*?)</figure>', page, re.S)
    assert match, f"no chart for {slug}"
    return match.group(1)


def row_of(page: str, attribute: str, value: str) -> str:
    match = re.search(rf'<tr {attribute}="{value}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no row {attribute}={value}"
    return match.group(1)


def entry_row(page: str, kind: str) -> str:
    """The newest ledger row of this kind."""
    match = re.search(rf'<tr data-entry="\d+" data-kind="{kind}">(.*?)</tr>', page, re.S)
    assert match, f"no {kind} entry"
    return match.group(1)


def line_points(chart: str) -> list[tuple[float, float]]:
    points = re.search(r'<polyline class="avg" points="([^"]+)"', chart).group(1)
    return [tuple(map(float, point.split(","))) for point in points.split()]


def cell(row: str, field: str) -> str:
    match = re.search(rf'data-field="{field}">(.*?)</td>', row, re.S)
    assert match, f"no cell {field}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


# --- /exchange --------------------------------------------------------------------------


def test_the_exchange_is_public_and_shows_network_stats_at_the_top(client, db):
    IslandFactory(region="eu-west")
    IslandFactory(region="us-east")
    IslandFactory(region="ap-south", last_heartbeat_at=timezone.now() - timedelta(hours=1))
    JobFactory.create_batch(2, status=Job.Status.COMPLETED)
    JobFactory(status=Job.Status.FAILED)

    response = client.get("/exchange")

    page = response.content.decode()
    assert response.status_code == 200
    assert '<a href="/exchange" aria-current="page">Exchange</a>' in page
    assert re.search(r'data-stat="online-islands">2<', page)
    assert re.search(r'data-stat="regions">2<', page)
    assert "eu-west, us-east" in page
    assert re.search(r'data-stat="jobs-completed">2<', page)
    assert page.index('id="network-stats"') < page.index('id="rates-title"')


def test_it_lists_each_cargos_latest_rate_with_four_decimals_and_a_suggested_bid(client, db):
    chat = CargoFactory(slug="llm-chat", name="LLM Chat")
    snapshot(chat, ago=timedelta(minutes=10), avg="0.5", low="0.5", high="0.5", hosts=1)
    snapshot(chat, ago=timedelta(minutes=5), avg="0.01", low="0.008", high="0.012", hosts=12)

    page = client.get("/exchange").content.decode()

    row = row_of(page, "data-cargo", "llm-chat")
    assert "LLM Chat" in row
    assert cell(row, "avg") == "0.0100"
    assert cell(row, "min") == "0.0080"
    assert cell(row, "max") == "0.0120"
    assert cell(row, "islands") == "12"
    assert cell(row, "suggested-bid") == "0.0105"
    assert "Surge" not in row


def test_rates_carry_a_surge_badge_when_queued_jobs_exceed_twice_the_capacity(client, db):
    chat = CargoFactory(slug="llm-chat")
    snapshot(chat, ago=timedelta(minutes=1), avg="0.0100", low="0.0080", high="0.0120")
    JobFactory(cargo=chat, status=Job.Status.QUEUED)  # no Island online: no capacity

    page = client.get("/exchange").content.decode()

    row = row_of(page, "data-cargo", "llm-chat")
    assert cell(row, "avg") == "0.0125"
    assert cell(row, "suggested-bid") == "0.0131"
    assert f"Surge {TIMES}1.25" in row
    assert 'id="surge-notice"' in page


def test_an_empty_exchange_says_that_no_rates_exist_yet(client, db):
    page = client.get("/exchange").content.decode()

    assert "No rates yet" in page
    assert "No price history in the last 24 hours." in page


def test_the_price_chart_is_an_accessible_svg_with_a_data_table(client, db):
    chat = CargoFactory(slug="llm-chat", name="LLM Chat")
    snapshot(chat, ago=timedelta(minutes=30), avg="0.0100", low="0.0080", high="0.0120")
    snapshot(chat, ago=timedelta(minutes=5), avg="0.0200", low="0.0150", high="0.0250")

    chart = chart_of(client.get("/exchange?window=1h").content.decode(), "llm-chat")

    assert '<svg class="price-chart"' in chart
    assert 'role="img"' in chart
    assert 'aria-labelledby="chart-llm-chat-title chart-llm-chat-desc"' in chart
    assert '<title id="chart-llm-chat-title">LLM Chat: price per job over the last 1 hour' in chart
    assert "from 0.0080 to 0.0250 credits per job" in chart
    (x1, y1), (x2, y2) = line_points(chart)
    assert x1 < x2  # older first, from left to right
    assert y2 < y1  # a higher price is drawn higher
    table = chart[chart.index("<table") :]
    assert table.count("<tr>") == 3  # header + two points
    assert "0.0200" in table
    assert "0.0250" in table


def test_the_window_switch_shows_only_the_snapshots_of_that_window(client, db):
    chat = CargoFactory(slug="llm-chat")
    snapshot(chat, ago=timedelta(days=3), avg="0.0300", low="0.0300", high="0.0300")
    snapshot(chat, ago=timedelta(minutes=5), avg="0.0100", low="0.0100", high="0.0100")

    day = chart_of(client.get("/exchange?window=24h").content.decode(), "llm-chat")
    week = client.get("/exchange?window=7d").content.decode()

    assert "0.0300" not in day
    assert "0.0300" in chart_of(week, "llm-chat")
    assert re.search(r'href="/exchange\?window=7d"[^>]*aria-current="true"', week)
    assert "last 7 days" in week


def test_the_30_day_window_draws_one_point_per_day(client, db):
    chat = CargoFactory(slug="llm-chat")
    now = timezone.now().replace(hour=12)
    for minutes in (0, 5, 10):
        for days in (1, 2):
            RateSnapshot.objects.create(
                cargo=chat, avg_price=D(f"0.0{days}"), min_price=D("0.01"), max_price=D("0.02"),
                num_hosts=1, created_at=now - timedelta(days=days, minutes=minutes),
            )  # fmt: skip

    chart = chart_of(client.get("/exchange?window=30d").content.decode(), "llm-chat")

    assert len(line_points(chart)) == 2


def test_the_charts_are_drawn_once_until_a_new_snapshot(client, db, django_assert_max_num_queries):
    chat = CargoFactory(slug="llm-chat")
    snapshot(chat, ago=timedelta(minutes=30), avg="0.0100", low="0.0080", high="0.0120")
    first = client.get("/exchange?window=24h", **HTMX).content.decode()
    with django_assert_max_num_queries(1):  # the newest snapshot's id: the charts are kept
        assert client.get("/exchange?window=24h", **HTMX).content.decode() == first
    snapshot(chat, ago=timedelta(minutes=5), avg="0.0200", low="0.0150", high="0.0250")
    assert "0.0250" in chart_of(client.get("/exchange?window=24h").content.decode(), "llm-chat")


def test_a_window_switch_by_htmx_gets_only_the_history_section(client, db):
    response = client.get("/exchange?window=30d", **HTMX)

    page = response.content.decode()
    assert "<html" not in page
    assert page.strip().startswith('<section id="price-history"')
    assert "last 30 days" in page
    assert "HX-Request" in response["Vary"]


def test_an_unknown_window_falls_back_to_24_hours(client, db):
    response = client.get("/exchange?window=1y")

    assert response.status_code == 200
    assert "last 24 hours" in response.content.decode()


# --- /settings/credits ------------------------------------------------------------------


def test_the_settings_page_loads_the_credit_history_section_from_its_url(signed_in):
    page = signed_in.get("/settings").content.decode()

    assert 'id="credit-history"' in page
    assert 'hx-get="/settings/credits"' in page


def test_it_shows_the_balance_holds_and_entries_with_the_balance_after(signed_in, user):
    job_id = uuid.uuid4()
    services.grant(user=user, amount=D("0.011970"), reason="Referral", idempotency_key="ref")
    services.hold(user_id=user.pk, job_id=job_id, amount=D("5"))

    response = signed_in.get("/settings/credits", **HTMX)

    page = response.content.decode()
    assert "<html" not in page  # the fragment that /settings swaps in
    assert re.search(r'data-field="available">9,995.01197<', page)
    assert re.search(r'data-field="held">5.00<', page)
    assert re.search(r'data-field="earnings">0.00<', page)
    rows = re.findall(r'<tr data-entry="\d+" data-kind="(\w+)"', page)
    assert rows == ["hold", "grant", "grant"]  # newest first
    hold = entry_row(page, "hold")
    assert cell(hold, "amount") == f"{MINUS}5.00"
    assert cell(hold, "balance-after") == "9,995.01197"
    assert cell(hold, "held-after") == "5.00"
    assert str(job_id)[:8] in hold
    referral = entry_row(page, "grant")
    assert "Referral" in referral
    assert cell(referral, "amount") == "+0.01197"
    assert cell(referral, "balance-after") == "10,000.01197"


def test_opened_directly_the_credit_history_is_a_whole_page(signed_in):
    page = signed_in.get("/settings/credits").content.decode()

    assert "<html" in page
    assert '<section id="credit-history"' in page
    assert "Starting grant" in page


def test_the_history_pages_twenty_entries_at_a_time(signed_in, user):
    for n in range(44):  # and the starting grant: 45 entries
        services.grant(user=user, amount=D(1), reason=f"Bonus {n}", idempotency_key=f"b{n}")

    first = signed_in.get("/settings/credits", **HTMX).content.decode()
    last = signed_in.get("/settings/credits?page=3", **HTMX).content.decode()
    beyond = signed_in.get("/settings/credits?page=99", **HTMX).content.decode()

    assert first.count("<tr data-entry=") == 20
    assert "Bonus 43" in first
    assert "Bonus 24" in first
    assert "Bonus 23" not in first
    assert "Page 1 of 3" in first
    assert 'hx-get="/settings/credits?page=2" hx-target="#credit-history"' in first
    assert 'rel="prev"' not in first
    assert last.count("<tr data-entry=") == 5
    assert "Page 3 of 3" in last
    assert 'rel="next"' not in last
    assert 'hx-get="/settings/credits?page=2"' in last
    assert beyond == last


def test_other_users_entries_are_never_shown(signed_in, user, other_user):
    services.grant(user=other_user, amount=D(7), reason="Grace's bonus", idempotency_key="g")
    services.hold(user_id=other_user.pk, job_id=uuid.uuid4(), amount=D(3))

    page = signed_in.get("/settings/credits", **HTMX).content.decode()

    assert "Grace" not in page
    assert page.count("<tr data-entry=") == 1
    assert re.search(r'data-field="held">0.00<', page)


def test_earnings_per_island_add_up_from_the_ledger(signed_in, user, other_user):
    """GIVEN two Islands of the user that ran three jobs of another account at 0.5 each
    WHEN the user opens the credit history
    THEN each Island shows its earnings net of the 10 % fee, and their sum is the total."""
    rig = IslandFactory(owner=user, name="big-rig", karma=12)
    laptop = IslandFactory(owner=user, name="laptop", karma=3)
    IslandFactory(owner=other_user, name="someone-elses")
    for island in (rig, rig, laptop):
        job = JobFactory(user=other_user, island=island, status=Job.Status.COMPLETED)
        services.hold(user_id=other_user.pk, job_id=job.id, amount=D("0.6"))
        settlement.settle(user_id=other_user.pk, owner_id=user.pk, job_id=job.id, price=D("0.5"))

    page = signed_in.get("/settings/credits", **HTMX).content.decode()

    assert cell(row_of(page, "data-island", str(rig.pk)), "earnings") == "0.90"
    assert cell(row_of(page, "data-island", str(laptop.pk)), "earnings") == "0.45"
    assert re.search(r'data-field="earnings">1.35<', page)
    assert "Unlocked" in row_of(page, "data-island", str(rig.pk))
    assert "Locked: karma 3 of +10" in row_of(page, "data-island", str(laptop.pk))
    assert "someone-elses" not in page
    assert "Payouts of earnings unlock at +10 karma per Island" in page
    fee = entry_row(page, "fee")
    assert cell(fee, "amount") == f"{MINUS}0.05 earnings"


def history_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/settings/credits?page=2", **HTMX).status_code == 200
    return len(queries)


def test_the_credit_history_runs_a_constant_number_of_queries(signed_in, user):
    IslandFactory(owner=user)
    few = history_queries(signed_in)
    for n in range(60):
        services.grant(user=user, amount=D(1), reason="Bonus", idempotency_key=f"q{n}")
    for _ in range(5):
        IslandFactory(owner=user)

    many = history_queries(signed_in)

    # session, user, balance, count, the page of entries, the Islands with their earnings
    assert few == many == 6


def test_the_exchange_runs_a_constant_number_of_queries(client, db):
    def queries() -> int:
        cache.clear()  # the surge flag is cached for 30 s
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/exchange").status_code == 200
        return len(captured)

    snapshot(CargoFactory(), ago=timedelta(minutes=5), avg="0.01", low="0.01", high="0.01")
    few = queries()
    for _ in range(5):
        cargo = CargoFactory()
        for minutes in (5, 65, 125):
            snapshot(cargo, ago=timedelta(minutes=minutes), avg="0.01", low="0.01", high="0.02")

    assert queries() == few


def test_a_user_without_ledger_rows_sees_zero_balances(client, db):
    stranger = UserFactory()
    client.force_login(stranger)

    page = client.get("/settings/credits", **HTMX).content.decode()

    assert re.search(r'data-field="available">0.00<', page)
    assert "No entries yet." in page
