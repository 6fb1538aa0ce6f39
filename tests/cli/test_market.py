"""`island market rates|history` and the balances of `island account`, against the live
test server."""

import json
import uuid
from datetime import timedelta
from decimal import Decimal as D

from django.utils import timezone
from island_cli.api import EXIT_NOT_FOUND, EXIT_USAGE

from billing import services, settlement
from compute.models import Job, RateSnapshot
from portal.models import User
from tests.factories import CargoFactory, IslandFactory, JobFactory


def snapshot(slug: str, *, ago: timedelta, avg: str, low: str, high: str, hosts: int):
    return RateSnapshot.objects.create(
        cargo=CargoFactory(slug=slug),
        avg_price=D(avg),
        min_price=D(low),
        max_price=D(high),
        num_hosts=hosts,
        created_at=timezone.now() - ago,
    )


def table(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()]


def test_market_rates_prints_the_seed_pages_columns_with_four_decimals(run, live):
    snapshot("sdxl", ago=timedelta(minutes=3), avg="0.05", low="0.04", high="0.06", hosts=5)
    snapshot("llm-chat", ago=timedelta(minutes=9), avg="0.2", low="0.2", high="0.2", hosts=1)
    snapshot("llm-chat", ago=timedelta(minutes=4), avg="0.01", low="0.008", high="0.012", hosts=12)

    result = run("--api-url", live.url, "market", "rates")

    assert result.exit_code == 0, result.output
    assert table(result.stdout) == [
        ["CARGO", "AVG", "MIN", "MAX", "HOSTS"],
        ["llm-chat", "0.0100", "0.0080", "0.0120", "12"],
        ["sdxl", "0.0500", "0.0400", "0.0600", "5"],
    ]
    header, row, _ = result.stdout.splitlines()
    assert row.index("0.0100") == header.index("AVG")


def test_market_rates_of_one_cargo_shows_only_that_cargo(run, live):
    snapshot("sdxl", ago=timedelta(minutes=3), avg="0.05", low="0.04", high="0.06", hosts=5)
    snapshot("llm-chat", ago=timedelta(minutes=4), avg="0.01", low="0.008", high="0.012", hosts=12)

    result = run("--api-url", live.url, "market", "rates", "llm-chat")

    assert result.exit_code == 0, result.output
    assert table(result.stdout)[1:] == [["llm-chat", "0.0100", "0.0080", "0.0120", "12"]]


def test_market_rates_as_json_keeps_the_exact_decimal_strings(run, live):
    snapshot("llm-chat", ago=timedelta(minutes=4), avg="0.01", low="0.008", high="0.012", hosts=12)

    result = run("--api-url", live.url, "--format", "json", "market", "rates")

    assert result.exit_code == 0, result.output
    [rate] = json.loads(result.stdout)
    assert rate["workload_slug"] == "llm-chat"
    assert (rate["avg_price"], rate["min_price"], rate["max_price"]) == (
        "0.010000",
        "0.008000",
        "0.012000",
    )
    assert rate["num_hosts"] == 12


def test_market_rates_under_surge_are_marked(run, live):
    snapshot("llm-chat", ago=timedelta(minutes=4), avg="0.01", low="0.008", high="0.012", hosts=1)
    JobFactory(cargo=CargoFactory(slug="llm-chat"), status=Job.Status.QUEUED)

    result = run("--api-url", live.url, "market", "rates")

    assert result.exit_code == 0, result.output
    assert table(result.stdout)[1] == ["llm-chat", "0.0125", "0.0100", "0.0150", "1"]
    assert "Surge pricing is on" in result.stdout


def test_market_rates_of_an_unknown_cargo_exits_with_not_found(run, live):
    result = run("--api-url", live.url, "market", "rates", "no-such-cargo")

    assert result.exit_code == EXIT_NOT_FOUND
    assert "not found" in result.output.lower()


def test_market_history_lists_the_window_hour_by_hour(run, live):
    snapshot("llm-chat", ago=timedelta(days=3), avg="0.03", low="0.03", high="0.03", hosts=2)
    older = snapshot(
        "llm-chat", ago=timedelta(hours=2), avg="0.02", low="0.01", high="0.03", hosts=4
    )
    snapshot("llm-chat", ago=timedelta(minutes=5), avg="0.01", low="0.01", high="0.01", hosts=6)

    day = run("--api-url", live.url, "market", "history", "llm-chat")
    week = run("--api-url", live.url, "market", "history", "llm-chat", "--window", "7d")

    assert day.exit_code == 0, day.output
    rows = table(day.stdout)
    assert rows[0] == ["TIME", "(UTC)", "AVG", "MIN", "MAX", "HOSTS"]
    assert [row[2:] for row in rows[1:]] == [
        ["0.0200", "0.0100", "0.0300", "4"],
        ["0.0100", "0.0100", "0.0100", "6"],
    ]
    assert rows[1][:2] == [f"{older.created_at:%Y-%m-%d}", f"{older.created_at:%H}:00"]
    assert [row[2] for row in table(week.stdout)[1:]] == ["0.0300", "0.0200", "0.0100"]


def test_market_history_as_json_is_the_list_of_snapshots(run, live):
    snapshot("llm-chat", ago=timedelta(minutes=50), avg="0.02", low="0.01", high="0.03", hosts=4)
    snapshot("llm-chat", ago=timedelta(hours=2), avg="0.05", low="0.05", high="0.05", hosts=1)

    args = ("--api-url", live.url, "market", "history", "llm-chat", "--window", "1h")
    result = run(*args, "--format", "json")

    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert (row["workload_slug"], row["avg_price"], row["num_hosts"]) == ("llm-chat", "0.020000", 4)
    assert row["timestamp"]


def test_market_history_with_nothing_in_the_window_says_so(run, live):
    CargoFactory(slug="llm-chat")

    result = run("--api-url", live.url, "market", "history", "llm-chat", "--window", "1h")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == "(no price history in the last 1h)"


def test_market_history_refuses_an_unknown_window(run, live):
    result = run("--api-url", live.url, "market", "history", "llm-chat", "--window", "1y")

    assert result.exit_code == EXIT_USAGE
    assert "'1y' is not one of '1h', '24h', '7d', '30d'" in result.output


def test_account_shows_credits_held_for_a_running_job(run, live, key):
    user = User.objects.get()
    services.hold(user_id=user.pk, job_id=uuid.uuid4(), amount=D("5.25"))

    result = run("--api-url", live.url, "--api-key", key, "account")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[3:] == [
        "  Credits: 9994.75",
        "  Held:    5.25",
        "  Earned:  0.00",
    ]


def test_account_as_json_has_available_held_and_earnings(run, live, key):
    owner = User.objects.get()
    consumer = User.objects.create_user(email="grace@example.com", password="pw")
    services.grant(user=consumer, amount=D(10), reason="Test", idempotency_key="grace")
    job = JobFactory(user=consumer, island=IslandFactory(owner=owner), status="completed")
    services.hold(user_id=consumer.pk, job_id=job.id, amount=D("2"))
    settlement.settle(user_id=consumer.pk, owner_id=owner.pk, job_id=job.id, price=D("1.5"))

    result = run("--api-url", live.url, "--api-key", key, "account", "--format", "json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["credits"], data["held"], data["earnings"]) == (10000, 0, 1.35)
