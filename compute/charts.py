"""Price-history charts drawn on the server as inline SVG: no JavaScript, no build step.

Prices stay Decimals for every label a reader sees; floats are used only for pixel
coordinates.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.utils import timezone

WIDTH, HEIGHT = 520, 210
LEFT, RIGHT, TOP, BOTTOM = 62, 14, 12, 30
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
Y_TICKS = 4  # about: the scale picks a round step
X_TICKS = {"1h": 5, "24h": 5, "7d": 8, "30d": 6}  # every 15 min, 6 h, day, 6 days
MAX_DOTS = 48  # above this the dots would merge into the line
TIME_FORMATS = {"1h": "%H:%M", "24h": "%H:%M", "7d": "%a", "30d": "%b %d"}
PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    line: str
    band: str
    dots: list[Dot]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    lowest: Decimal
    highest: Decimal
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def _step(span: Decimal) -> Decimal:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about Y_TICKS lines."""
    raw = span / (Y_TICKS - 1)
    base = Decimal(1).scaleb(raw.adjusted())
    return next(base * m for m in (1, 2, Decimal("2.5"), 5, 10) if base * m >= raw)


def _scale(rows: Sequence[dict]) -> list[Decimal]:
    """The prices of the horizontal grid lines, lowest first, spanning every row."""
    low, high = min(r["low"] for r in rows), max(r["high"] for r in rows)
    if high == low:  # a flat market: centre it
        low, high = low - max(low / 10, PLACES), high + max(high / 10, PLACES)
    step = _step(high - low)
    first = max((low / step).to_integral_value(ROUND_FLOOR) * step, Decimal(0))
    last = (high / step).to_integral_value(ROUND_CEILING) * step
    return [first + step * i for i in range(int((last - first) / step) + 1)]


def _label(price: Decimal, step: Decimal) -> str:
    places = max(4, -int(step.normalize().as_tuple().exponent))
    return f"{price:.{places}f}"


def _when(at: datetime, window: str) -> str:
    return timezone.localtime(at).strftime(TIME_FORMATS[window])


def price_chart(rows: Sequence[dict], *, start: datetime, end: datetime, window: str) -> Chart:
    """A chart of ``rows`` ({at, avg, low, high}, oldest first) between start and end."""
    ticks = _scale(rows)
    low, high = ticks[0], ticks[-1]
    span = (end - start).total_seconds()

    def x(at: datetime) -> float:
        share = min(max((at - start).total_seconds() / span, 0.0), 1.0)
        return round(LEFT + share * PLOT_W, 1)

    def y(price: Decimal) -> float:
        return round(TOP + PLOT_H * float((high - price) / (high - low)), 1)

    top_edge = [f"{x(r['at'])},{y(r['high'])}" for r in rows]
    bottom_edge = [f"{x(r['at'])},{y(r['low'])}" for r in reversed(rows)]
    dots = [
        Dot(x(r["at"]), y(r["avg"]), f"{_when(r['at'], window)} · {r['avg'].quantize(PLACES)}")
        for r in rows
    ]
    ticks_x = X_TICKS[window]
    times = [start + (end - start) * i / (ticks_x - 1) for i in range(ticks_x)]
    return Chart(
        line=" ".join(f"{x(r['at'])},{y(r['avg'])}" for r in rows),
        band=" ".join(top_edge + bottom_edge),
        dots=dots if len(dots) <= MAX_DOTS else [],
        y_ticks=[Tick(y(p), _label(p, ticks[1] - ticks[0])) for p in ticks],
        x_ticks=[Tick(x(t), _when(t, window)) for t in times],
        lowest=min(r["low"] for r in rows),
        highest=max(r["high"] for r in rows),
    )
