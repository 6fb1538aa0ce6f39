"""core.windows: sliding-window limits in Redis."""

import uuid

import pytest

from core import windows

HOUR = 3600


@pytest.fixture
def window() -> windows.Window:
    """Three events an hour, under a key of its own."""
    return windows.Window(f"test:{uuid.uuid4()}", 3, HOUR)


def test_a_window_has_room_until_its_limit_and_then_says_how_long_to_wait(window):
    start = 1_000_000.0
    for n in range(3):
        assert windows.retry_after([window], now=start + n) == 0
        windows.record([window], now=start + n)

    assert windows.check([window], now=start + 10) == [windows.Count(3, HOUR - 10)]


def test_a_limit_cannot_be_spent_twice_around_the_hour(window):
    """GIVEN a limit spent in the last second before the hour WHEN the hour turns THEN it
    is still spent (fixed hourly counters would start afresh)."""
    hour = 1_000 * HOUR
    for n in range(3):
        windows.record([window], now=hour - 1 + n / 10)

    assert windows.retry_after([window], now=hour + 1) == HOUR - 2
    assert windows.retry_after([window], now=hour - 1 + HOUR) == 0


def test_the_oldest_event_leaving_the_window_makes_room_for_one(window):
    for at in (0.0, 100.0, 200.0):
        windows.record([window], now=1_000_000 + at)

    assert windows.check([window], now=1_000_000 + HOUR) == [windows.Count(2, 0)]
    windows.record([window], now=1_000_000 + HOUR)
    assert windows.retry_after([window], now=1_000_000 + HOUR) == 100


def test_a_window_never_holds_more_than_its_limit(window):
    for n in range(50):
        windows.record([window], now=1_000_000 + n)

    assert windows.check([window], now=1_000_100)[0].count == 3


def test_windows_are_checked_and_counted_together(window):
    other = windows.Window(f"test:{uuid.uuid4()}", 1, 60)
    windows.record([window, other], now=1_000_000)

    assert windows.check([window, other], now=1_000_030) == [
        windows.Count(1, 0),
        windows.Count(1, 30),
    ]
    assert windows.retry_after([window, other], now=1_000_030) == 30


@pytest.mark.parametrize(
    ("ip", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:1:2:3", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", "unknown"),
    ],
)
def test_an_ipv6_address_counts_as_its_whole_64(ip, counted_as):
    assert windows.address(ip) == counted_as
