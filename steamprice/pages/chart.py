"""Step charts of a region's price history, as SVG geometry (pure; the template draws it).

Server-side SVG rather than a JavaScript chart library: the pages need no script at all (so a
strict Content-Security-Policy forbids every script), nothing to vendor or keep patched, the
chart is visible without JavaScript and its points are plain attributes a test reads from the
DOM. A chart shows one region in its own currency, prices from zero up, so that a sale's depth
is visible at a glance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from steamprice.pages.query import Period

WIDTH = 720
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28
MIN_SPAN = timedelta(minutes=1)
X_TICKS = 4
Y_TICKS = 4

Point = tuple[float, float]


@dataclass(frozen=True)
class Segment:
    """One priced period on the chart."""

    x1: float
    x2: float
    y: float
    period: Period
    at_low: bool


@dataclass(frozen=True)
class Chart:
    """Where everything goes, in SVG user units (``width`` x ``height``, origin top left)."""

    currency: str
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    price_max: int
    start: datetime
    end: datetime
    segments: list[Segment]
    # The price as step lines, one per run of priced periods (a gap where it was not priced).
    lines: list[list[Point]]
    # Discounted stretches: the list price above them (dashed) and the area below the price.
    list_lines: list[tuple[Point, Point]]
    sales: list[Segment]
    low: int | None
    low_y: float | None
    low_marks: list[Point]
    y_ticks: list[tuple[float, int]]
    x_ticks: list[tuple[float, datetime]]

    def y_for(self, amount: int) -> float:
        return _y(amount, self.price_max, self.top, self.bottom)

    def points_text(self, line: Sequence[Point]) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in line)


def nice_step(span: float, ticks: int = Y_TICKS) -> int:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) for ``span`` in ``ticks`` steps."""
    raw = max(span / ticks, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return max(int(factor * power), 1)
    return int(10 * power)  # pragma: no cover (the loop always returns)


def _y(amount: int, price_max: int, top: float, bottom: float) -> float:
    return bottom - (bottom - top) * amount / price_max


def step_chart(
    periods: Sequence[Period],
    currency: str | None,
    low: int | None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Chart | None:
    """The chart of ``periods`` (one region, oldest first) in ``currency``; None if none priced.

    Periods in another currency are left out (a region that changed currency starts over). The
    open period ends at its last observation: the chart shows what was seen, not beyond.
    """
    shown = [p for p in periods if p.currency == currency or not p.priced]
    priced = [p for p in shown if p.priced and p.final is not None]
    if currency is None or not priced:
        return None
    start = min(p.valid_from for p in priced)
    shown = [p for p in shown if (p.valid_to or p.last_observed_at) > start or p.priced]
    ends = [p.valid_to or max(p.last_observed_at, p.valid_from) for p in shown]
    end = max(max(ends), start + MIN_SPAN)
    # The open period lasts to the chart's end (a single observation still draws a line).
    ends = [e if p.valid_to is not None else end for p, e in zip(shown, ends, strict=True)]
    left, right, top, bottom = LEFT, width - RIGHT, TOP, height - BOTTOM
    top_price = max(max(p.final or 0, p.initial or 0) for p in priced)
    step = nice_step(top_price * 1.1)
    price_max = max(step * math.ceil(top_price * 1.1 / step), step)
    span = (end - start).total_seconds()

    def x_for(moment: datetime) -> float:
        return left + (right - left) * (moment - start).total_seconds() / span

    segments: list[Segment] = []
    lines: list[list[Point]] = []
    line: list[Point] = []
    for period, period_end in zip(shown, ends, strict=True):
        if not period.priced or period.final is None:
            if line:
                lines.append(line)
            line = []
            continue
        x1, x2 = x_for(max(period.valid_from, start)), x_for(period_end)
        y = _y(period.final, price_max, top, bottom)
        segments.append(Segment(x1, x2, y, period, low is not None and period.final <= low))
        line += [(x1, y), (x2, y)]
    if line:
        lines.append(line)
    sales = [s for s in segments if s.period.discount]
    return Chart(
        currency=currency,
        width=width,
        height=height,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        price_max=price_max,
        start=start,
        end=end,
        segments=segments,
        lines=lines,
        list_lines=[
            ((s.x1, list_y), (s.x2, list_y))
            for s in sales
            for list_y in [_y(s.period.initial or 0, price_max, top, bottom)]
        ],
        sales=sales,
        low=low,
        low_y=_y(low, price_max, top, bottom) if low is not None else None,
        low_marks=[((s.x1 + s.x2) / 2, s.y) for s in segments if s.at_low],
        y_ticks=[
            (_y(amount, price_max, top, bottom), amount) for amount in range(0, price_max + 1, step)
        ],
        x_ticks=[
            (x_for(start + (end - start) * i / X_TICKS), start + (end - start) * i / X_TICKS)
            for i in range(X_TICKS + 1)
        ],
    )
