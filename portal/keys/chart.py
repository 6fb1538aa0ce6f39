"""The small usage chart of a key on /settings: an inline SVG drawn here, one bar a day
(the credits its jobs held or spent that day, or its jobs when none cost anything), each
with its figures as a tooltip, and a text summary for screen readers."""

from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT, BAR = 150, 36, 5  # pixels: 30 days of 5


def _amount(day: dict) -> Decimal:
    return Decimal(day["credits_spent"]) + Decimal(day["credits_held"])


def svg(days: list[dict]) -> SafeString:
    """The chart of ``days`` (portal.keys.usage.last_days), oldest first."""
    credits = [_amount(day) for day in days]
    jobs = sum(day["jobs"] for day in days)
    values = credits if any(credits) else [Decimal(day["jobs"]) for day in days]
    top = max(values) or Decimal(1)
    bars = []
    for i, (day, value) in enumerate(zip(days, values, strict=True)):
        height = max(1, round(float(value / top) * (HEIGHT - 2))) if value else 0
        tip = (f"{day['day']:%b %-d}: {day['jobs']} jobs, {_amount(day):.2f} credits,"
               f" {day['tokens']} tokens, {day['requests']} requests")  # fmt: skip
        bars.append((i * BAR, HEIGHT - height, BAR - 1, height, tip))
    label = f"Usage over {len(days)} days: {jobs} jobs, {sum(credits):.2f} credits"
    rects = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>',
        bars,
    )
    return format_html(
        '<svg class="usage-chart" role="img" aria-label="{}" width="{}" height="{}"'
        ' viewBox="0 0 {} {}"><line x1="0" y1="{}" x2="{}" y2="{}"/>{}</svg>',
        label, WIDTH, HEIGHT, WIDTH, HEIGHT, HEIGHT - 0.5, WIDTH, HEIGHT - 0.5, rects,
    )  # fmt: skip
