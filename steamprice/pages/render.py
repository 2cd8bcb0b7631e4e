"""HTML of the price pages (pure): Jinja2 templates with autoescaping on every value.

Names come from SteamSpy and may hold anything (``<script>`` included): every value reaches the
page through Jinja's autoescape, nothing is marked safe, and the pages carry a
Content-Security-Policy that allows no script at all (see ``views.HEADERS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jinja2

# The one import of the notifier's formatting (the Discord embed shows prices the same way).
from steamprice.notify.embeds import KIND_LABELS, format_price
from steamprice.pages.chart import Chart, step_chart
from steamprice.pages.query import (
    SORTS,
    AppDetail,
    Change,
    ChangeQuery,
    PriceQuery,
    PriceRow,
    RegionPrice,
    store_url,
)
from steamprice.pricing import KINDS

STATUS_LABELS = {"priced": "priced", "no_price": "no price", "unknown": "unknown to Steam"}

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("steamprice.pages", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def day(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d")


def tick(moment: datetime, span: timedelta) -> str:
    """An x-axis label: the date, with the time (and seconds) as the chart's span shrinks."""
    moment = moment.astimezone(UTC)
    if span < timedelta(hours=1):
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%m-%d %H:%M" if span < timedelta(days=2) else "%Y-%m-%d")


def url(path: str, params: Mapping[str, str] | None = None) -> str:
    return f"{path}?{urlencode(params)}" if params else path


def app_title(app_id: int, name: str | None) -> str:
    return name if name else f"App {app_id}"


_env.filters.update(
    price=lambda amount, currency: format_price(amount, currency),
    when=when,
    day=day,
    kind_label=lambda kind: KIND_LABELS.get(kind, kind),
    status_label=lambda status: STATUS_LABELS.get(status, status),
)
_env.globals.update(url=url, app_title=app_title, store_url=store_url, tick=tick)


def _render(template: str, **context: Any) -> str:
    return _env.get_template(template).render(**context)


def prices_page(
    query: PriceQuery, rows: Sequence[PriceRow], has_next: bool, regions: Sequence[str]
) -> str:
    return _render(
        "prices.html",
        title="Prices",
        query=query,
        rows=rows,
        has_next=has_next,
        regions=sorted({*regions, query.cc}),
        sorts=SORTS,
        first=query.offset + 1,
    )


def charts_for(detail: AppDetail) -> dict[str, Chart | None]:
    """One chart per region, in the region's current currency, its historical low marked."""
    out: dict[str, Chart | None] = {}
    for region in detail.regions:
        price: RegionPrice = region.price
        currency = price.currency or _last_currency(region.history)
        low = price.historical_low.final if price.historical_low else None
        out[price.cc] = step_chart(region.history, currency, low)
    return out


def _last_currency(history: Sequence[Any]) -> str | None:
    for period in reversed(history):
        if period.currency:
            return str(period.currency)
    return None


def app_page(detail: AppDetail) -> str:
    return _render(
        "app.html",
        title=app_title(detail.app_id, detail.name),
        detail=detail,
        charts=charts_for(detail),
    )


def next_cursor(changes: Sequence[Change]) -> tuple[datetime, str]:
    """The cursor of the page after ``changes``: the last one's (observed_at, event_id)."""
    last = changes[-1]
    return (last.observed_at.replace(tzinfo=None), last.event_id)


def changes_page(
    query: ChangeQuery, changes: Sequence[Change], has_more: bool, regions: Sequence[str]
) -> str:
    return _render(
        "changes.html",
        title="Price changes",
        query=query,
        changes=changes,
        older=query.params(before=next_cursor(changes)) if has_more and changes else None,
        newest=query.params(before=None) if query.before else None,
        regions=sorted({*regions, *([query.cc] if query.cc else [])}),
        kinds=KINDS,
    )


def error_page(status: int, title: str, message: str) -> str:
    return _render("error.html", title=title, status=status, message=message)
