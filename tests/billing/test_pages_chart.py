"""The server-side SVG price chart of the Exchange page."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from compute.charts import LEFT, RIGHT, TOP, WIDTH, price_chart

END = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def row(minutes_ago: int, avg: str, low: str, high: str) -> dict:
    return {
        "at": END - timedelta(minutes=minutes_ago),
        "avg": D(avg),
        "low": D(low),
        "high": D(high),
    }


def test_the_price_scale_uses_round_steps_that_cover_every_ask():
    rows = [row(50, "0.0100", "0.0057", "0.0130"), row(10, "0.0120", "0.0090", "0.0162")]

    chart = price_chart(rows, start=END - timedelta(hours=1), end=END, window="1h")

    labels = [tick.label for tick in chart.y_ticks]
    assert labels == ["0.0050", "0.0100", "0.0150", "0.0200"]
    assert (chart.lowest, chart.highest) == (D("0.0057"), D("0.0162"))


def test_a_flat_market_is_drawn_in_the_middle():
    rows = [row(30, "0.01", "0.01", "0.01")]

    chart = price_chart(rows, start=END - timedelta(hours=1), end=END, window="1h")

    [(x, y)] = [tuple(map(float, p.split(","))) for p in chart.line.split()]
    assert chart.y_ticks[0].pos > y > chart.y_ticks[-1].pos
    assert y == (chart.y_ticks[0].pos + chart.y_ticks[-1].pos) / 2
    assert x == (LEFT + WIDTH - RIGHT) / 2  # half-way through the hour


def test_tiny_prices_keep_their_digits_in_the_labels():
    rows = [row(30, "0.00002", "0.00001", "0.00003")]

    chart = price_chart(rows, start=END - timedelta(hours=1), end=END, window="1h")

    assert [tick.label for tick in chart.y_ticks] == ["0.00001", "0.00002", "0.00003"]


def test_time_labels_span_the_window_and_points_before_it_are_clamped():
    rows = [row(60 * 24 * 8, "1", "1", "2"), row(60, "1", "1", "2")]

    chart = price_chart(rows, start=END - timedelta(days=7), end=END, window="7d")

    assert [tick.label for tick in chart.x_ticks] == [
        "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Mon",
    ]  # fmt: skip
    first_x = float(chart.line.split()[0].split(",")[0])
    assert first_x == LEFT
    assert chart.y_ticks[-1].pos == TOP
    assert chart.dots  # few points: each gets a dot with a tooltip
