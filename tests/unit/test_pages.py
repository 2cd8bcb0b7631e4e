"""The price pages' pure parts: parameters, SQL, lows, chart geometry, escaping and formatting."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from steamprice.pages import query as pq
from steamprice.pages import render
from steamprice.pages.chart import nice_step, step_chart
from steamprice.storage import low_rows

T = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)
N = T.replace(tzinfo=None)
H = timedelta(hours=1)
SCRIPT = "<script>alert(1)</script>"


# --- parameters -------------------------------------------------------------------------------


def test_price_query_defaults_and_values() -> None:
    assert pq.parse_price_query({}, "us") == pq.PriceQuery(cc="us")
    got = pq.parse_price_query(
        {"q": " portal ", "cc": "GB", "min_discount": "25", "at_low": "1", "sort": "price",
         "page": "3", "per_page": "20"},
        "us",
    )  # fmt: skip
    assert got == pq.PriceQuery("gb", "portal", 25, True, "price", 3, 20)
    assert got.offset == 40
    # Empty form fields are the defaults (a submitted form sends them all).
    blank = {"q": "", "cc": "", "min_discount": "", "sort": "", "page": ""}
    assert pq.parse_price_query(blank, "de") == pq.PriceQuery(cc="de")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sort": "cheapest"}, "sort must be one of"),
        ({"page": "0"}, "page must be a whole number from 1"),
        ({"page": "-1"}, "page must be"),
        ({"page": "1e3"}, "page must be"),
        ({"page": "99999999999"}, "page must be"),
        ({"min_discount": "101"}, "min_discount must be a whole number from 0 to 100"),
        ({"cc": "usa"}, "two-letter region code"),
        ({"cc": "u1"}, "two-letter region code"),
        ({"at_low": "maybe"}, "at_low must be 1 or 0"),
        ({"q": "x" * 101}, "q is longer than 100"),
        ({"per_page": "201"}, "per_page must be"),
    ],
)
def test_bad_price_parameters_are_refused_with_a_reason(
    params: dict[str, str], message: str
) -> None:
    with pytest.raises(pq.BadParameter, match=message):
        pq.parse_price_query(params, "us")


def test_paging_stops_at_the_deepest_offset() -> None:
    deepest = pq.deepest_page(pq.PER_PAGE)
    assert deepest == 201
    assert pq.parse_price_query({"page": str(deepest)}, "us").page == deepest
    with pytest.raises(pq.BadParameter):
        pq.parse_price_query({"page": str(deepest + 1)}, "us")


def test_query_strings_leave_defaults_out() -> None:
    query = pq.PriceQuery(cc="us", q="a&b", at_low=True, page=2)
    assert query.params() == {"q": "a&b", "cc": "us", "at_low": "1", "page": "2"}
    assert query.params(page=1) == {"q": "a&b", "cc": "us", "at_low": "1"}
    assert render.url("/prices", query.params()) == "/prices?q=a%26b&cc=us&at_low=1&page=2"


def test_app_ids_in_paths() -> None:
    assert pq.parse_app_id("730") == 730
    for bad in ("0", "abc", "-5", "7.5", "99999999999", ""):
        with pytest.raises(pq.NotFound):
            pq.parse_app_id(bad)


def test_change_query_and_its_cursor() -> None:
    assert pq.parse_change_query({}) == pq.ChangeQuery()
    cursor = (N, "a" * 40)
    text = pq.format_cursor(cursor)
    assert pq.parse_cursor(text) == cursor
    got = pq.parse_change_query(
        {"cc": "us", "kind": "discount_started", "app": "10", "before": text}
    )
    assert got == pq.ChangeQuery("us", "discount_started", 10, cursor)
    assert pq.parse_change_query(got.params()) == got
    for params, message in (
        ({"kind": "sale"}, "kind must be one of"),
        ({"app": "x"}, "app must be an app id"),
        ({"before": "yesterday"}, "not a cursor"),
        ({"before": f"{N.isoformat()}~' OR 1=1 --"}, "not a cursor"),
    ):
        with pytest.raises(pq.BadParameter, match=message):
            pq.parse_change_query(params)


# --- SQL --------------------------------------------------------------------------------------


def test_like_patterns_match_the_text_literally() -> None:
    assert pq.like_pattern("50% off_now\\") == "%50\\% off\\_now\\\\%"


def test_visitor_text_reaches_the_sql_only_as_parameters() -> None:
    query = pq.PriceQuery(cc="us", q="' OR 1=1 --", min_discount=30, at_low=True, sort="name")
    sql, args = pq.price_list_sql(query)
    assert "OR 1=1" not in sql
    assert sql.count("%s") == len(args)
    assert args == ["us", 30, "%' OR 1=1 --%", 51, 0]
    assert "p.discount_percent >= %s AND p.final_price < p.initial_price" in sql
    assert "p.final_price <= l.low_final" in sql
    assert sql.endswith("ORDER BY a.name ASC, a.app_id ASC LIMIT %s OFFSET %s")


def test_price_sql_per_filter_and_sort() -> None:
    sql, args = pq.price_list_sql(pq.PriceQuery(cc="gb", page=3, per_page=10))
    assert "WHERE p.cc = %s ORDER BY p.discount_percent DESC, p.app_id DESC" in sql
    assert args == ["gb", 11, 20]
    sql, _ = pq.price_list_sql(pq.PriceQuery(cc="gb", sort="price"))
    assert "p.final_price IS NOT NULL" in sql  # a price order lists priced apps only
    sql, args = pq.price_list_sql(pq.PriceQuery(cc="us", q="730"))
    assert "(p.app_id = %s OR a.name LIKE %s)" in sql and args[:3] == ["us", 730, "%730%"]
    sql, args = pq.price_list_sql(pq.PriceQuery(cc="us", q="99999999999"))
    assert "p.app_id = %s" not in sql and args[1] == "%99999999999%"


def test_change_sql_filters_and_cursor() -> None:
    sql, args = pq.change_list_sql(pq.ChangeQuery())
    assert "WHERE" not in sql and args == [51]
    before = (N, "e" * 40)
    sql, args = pq.change_list_sql(pq.ChangeQuery("us", "discount_ended", 7, before, 5))
    assert "c.cc = %s AND c.kind = %s AND c.app_id = %s AND (c.observed_at < %s OR" in sql
    assert args == ["us", "discount_ended", 7, N, N, "e" * 40, 6]
    assert sql.endswith("ORDER BY c.observed_at DESC, c.event_id DESC LIMIT %s")


# --- lows -------------------------------------------------------------------------------------


def period(
    start: int, end: int | None, final: int | None, cc: str = "us", currency: str | None = "USD",
    initial: int | None = None, discount: int = 0,
) -> pq.Period:  # fmt: skip
    return pq.Period(
        cc=cc,
        valid_from=T + start * H,
        valid_to=T + end * H if end is not None else None,
        status="priced" if final is not None else "no_price",
        currency=currency if final is not None else None,
        initial=initial if initial is not None else final,
        final=final,
        discount_percent=discount,
        last_observed_at=T + (end if end is not None else start + 1) * H,
    )


def test_lowest_since_counts_periods_that_reach_into_the_window() -> None:
    periods = [
        period(0, 10, 499),  # ended before the window
        period(10, 20, 999),  # reaches into it
        period(20, 30, 799),
        period(30, 40, None),
        period(40, None, 799),  # the latest start at the low wins
    ]
    assert pq.lowest_since(periods, "USD", T + 15 * H) == pq.Low(799, T + 40 * H)
    assert pq.lowest_since(periods, "USD", T - H) == pq.Low(499, T)
    assert pq.lowest_since(periods, "EUR", T) is None
    assert pq.lowest_since(periods[3:4], "USD", T) is None


def test_the_sink_keeps_one_low_per_region_and_currency() -> None:
    def row(
        app: int, cc: str, start: int, final: int | None, currency: str = "USD"
    ) -> tuple[Any, ...]:
        status = "priced" if final is not None else "no_price"
        return (
            app,
            cc,
            N + start * H,
            None,
            status,
            currency if final else None,
            final,
            final,
            0,
            N,
        )

    rows = [
        row(1, "us", 0, 999), row(1, "us", 1, 499), row(1, "us", 2, 999), row(1, "us", 3, 499),
        row(1, "gb", 0, 799), row(1, "us", 4, 300, "EUR"), row(2, "us", 0, None),
    ]  # fmt: skip
    assert low_rows(rows) == [
        (1, "gb", "USD", 799, N),
        (1, "us", "EUR", 300, N + 4 * H),
        (1, "us", "USD", 499, N + 3 * H),  # the latest period at the low
    ]
    assert low_rows(list(reversed(rows))) == low_rows(rows)  # any order


def test_at_historical_low_only_when_priced_at_or_below_it() -> None:
    def price(final: int | None, low: int | None) -> pq.RegionPrice:
        return pq.RegionPrice(
            "us", "priced" if final else "no_price", "USD", final, final, 0,
            historical_low=pq.Low(low, T) if low else None,
        )  # fmt: skip

    assert price(499, 499).at_historical_low
    assert not price(999, 499).at_historical_low
    assert not price(None, 499).at_historical_low
    assert not price(499, None).at_historical_low


# --- chart ------------------------------------------------------------------------------------


def test_nice_steps() -> None:
    assert [nice_step(v) for v in (1099, 4000, 12, 132000, 0)] == [500, 1000, 5, 50000, 1]


def _price_of(chart: Any, y: float) -> float:
    return float((chart.bottom - y) / (chart.bottom - chart.top) * chart.price_max)


def test_a_sale_is_a_step_down_and_back_marked_at_the_low() -> None:
    periods = [
        period(0, 10, 999),
        period(10, 12, 499, initial=999, discount=50),
        period(12, None, 999),
    ]
    chart = step_chart(periods, "USD", low=499)
    assert chart is not None
    [line] = chart.lines
    xs = [x for x, _ in line]
    assert [round(_price_of(chart, y)) for _, y in line] == [999, 999, 499, 499, 999, 999]
    assert xs[0] == chart.left and xs[-1] == chart.right and xs == sorted(xs)
    # Time is to scale: the sale is 2 of the 13 hours (the open period ends at its last look).
    assert (xs[3] - xs[2]) / (chart.right - chart.left) == pytest.approx(2 / 13)
    assert [s.period.final for s in chart.sales] == [499]
    [((_, list_y), _)] = chart.list_lines
    assert round(_price_of(chart, list_y)) == 999
    assert chart.low_y == chart.y_for(499)
    assert [round(_price_of(chart, y)) for _, y in chart.low_marks] == [499]
    assert chart.y_ticks[0] == (chart.bottom, 0) and chart.price_max >= 999 * 1.1
    assert chart.x_ticks[0] == (chart.left, chart.start) and len(chart.x_ticks) == 5


def test_unpriced_stretches_break_the_line_and_other_currencies_are_left_out() -> None:
    periods = [
        period(0, 5, 1500, currency="EUR"),
        period(5, 10, 999),
        period(10, 20, None),
        period(20, None, 899),
    ]
    chart = step_chart(periods, "USD", low=899)
    assert chart is not None
    assert len(chart.lines) == 2
    assert chart.start == T + 5 * H  # the EUR period is not on a USD chart
    assert [s.period.final for s in chart.segments] == [999, 899]
    assert step_chart(periods, "GBP", low=None) is None
    assert step_chart([period(0, None, None)], "USD", low=None) is None


def test_a_single_observation_still_draws_a_line() -> None:
    only = pq.Period("us", T, None, "priced", "USD", 999, 999, 0, T)
    chart = step_chart([only], "USD", low=999)
    assert chart is not None
    [line] = chart.lines
    assert line[0][0] == chart.left and line[-1][0] == chart.right


# --- HTML -------------------------------------------------------------------------------------


def region(cc: str = "us", final: int | None = 499, **kw: Any) -> pq.RegionPrice:
    values: dict[str, Any] = {
        "cc": cc, "status": "priced" if final else "no_price", "currency": "USD" if final else None,
        "initial": 999 if final else None, "final": final, "discount_percent": 50 if final else None,
        "observed_at": T, "historical_low": pq.Low(499, T) if final else None,
    }  # fmt: skip
    values.update(kw)
    return pq.RegionPrice(**values)


def change(app_id: int = 7, name: str | None = SCRIPT, **kw: Any) -> pq.Change:
    values: dict[str, Any] = {
        "event_id": "e" * 40, "app_id": app_id, "name": name, "cc": "us",
        "kind": "discount_started", "currency": "USD", "old_status": "priced",
        "new_status": "priced", "old_currency": "USD", "old_initial": 999, "old_final": 999,
        "old_discount": 0, "new_initial": 999, "new_final": 499, "new_discount": 50,
        "observed_at": T, "new_historical_low": True, "matches_historical_low": False,
        "historical_low": 499, "lowest_90d": 999, "discount_ends_at": None,
    }  # fmt: skip
    values.update(kw)
    return pq.Change(**values)


def visible(html: str) -> str:
    """Text with tags removed and whitespace collapsed (entities left as they are)."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_names_with_markup_are_escaped_everywhere() -> None:
    rows = [pq.PriceRow(7, SCRIPT, region(), [region(), region("gb")], change())]
    pages = {
        "prices": render.prices_page(pq.PriceQuery(cc="us", q=SCRIPT), rows, False, ["us"]),
        "app": render.app_page(pq.AppDetail(7, SCRIPT, [], [change()], False)),
        "changes": render.changes_page(pq.ChangeQuery(), [change()], False, ["us"]),
    }
    for name, html in pages.items():
        assert SCRIPT not in html, name
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, name
        assert "<script" not in html, name  # the pages have no script of their own either


def test_price_list_shows_prices_discounts_lows_and_sale_ends() -> None:
    ends = T + 48 * H
    rows = [
        pq.PriceRow(7, "Portal", region(discount_ends_at=ends), [region(), region("jp", 120000,
            currency="JPY", initial=120000, discount_percent=0)], change(name="Portal")),
        pq.PriceRow(8, None, region(final=None), []),
    ]  # fmt: skip
    html = render.prices_page(pq.PriceQuery(cc="us"), rows, True, ["us", "jp"])
    text = visible(html)
    assert "Portal #7 $9.99 $4.99 -50% sale ends 2025-08-19 12:00 UTC $4.99 at low" in text
    assert "Sale started 2025-08-17 JP ¥1,200" in text
    assert "App 8 #8 no price" in text
    assert 'href="/prices?cc=us&amp;page=2"' in html and "Previous" not in html


def test_app_page_has_lows_chart_and_store_link() -> None:
    history = [period(0, 10, 999), period(10, None, 499, initial=999, discount=50)]
    detail = pq.AppDetail(
        7,
        "Portal",
        [pq.RegionDetail(region(lowest_90d=pq.Low(499, T + 10 * H)), history)],
        [],
        False,
    )
    html = render.app_page(detail)
    text = visible(html)
    assert "Historical low $4.99 2025-08-17 at low now" in text
    assert "Lowest in 90 days $4.99 2025-08-17" in text
    assert 'href="https://store.steampowered.com/app/7/"' in html
    assert html.count('<polyline class="price"') == 1 and 'class="sale"' in html
    assert "No price change recorded yet" in text


def test_axis_labels_fit_the_span() -> None:
    day = timedelta(days=1)
    assert render.tick(T, 90 * day) == "2025-08-17"
    assert render.tick(T, day) == "08-17 12:00"
    assert render.tick(T + timedelta(seconds=5), timedelta(minutes=2)) == "12:00:05"


def test_error_page() -> None:
    html = render.error_page(503, "Database unavailable", f"MySQL {SCRIPT}")
    assert "Database unavailable" in html and "&lt;script&gt;" in html and SCRIPT not in html


def test_json_of_an_app_has_the_contract_keys() -> None:
    detail = pq.app_detail(
        (7, "Portal"),
        [(7, "Portal", "us", "priced", "USD", 999, 499, 50, N, N + 48 * H, 499, N)],
        [("us", N, None, "priced", "USD", 999, 499, 50, N)],
        [],
        now=T,
    )
    doc = detail.to_json()
    assert set(doc) >= {"app_id", "name", "regions", "changes"}
    [us] = doc["regions"]
    assert {
        "cc", "status", "currency", "initial_price", "final_price", "discount_percent",
        "observed_at", "discount_ends_at", "historical_low",
    } <= set(us)  # fmt: skip
    assert us["discount_ends_at"] == "2025-08-19T12:00:00+00:00"
    assert us["lowest_90d"] == 499 and us["at_historical_low"] is True


def test_a_price_list_row_joins_its_regions_and_its_last_change() -> None:
    main = [(7, "Portal", "us", "priced", "USD", 999, 499, 50, N, None, 499, N)]
    others = [(7, "gb", "priced", "GBP", 799, 799, 0), (7, "us", "priced", "USD", 999, 499, 50)]
    newest = (
        "f" * 40, 7, "Portal", "us", "discount_started", "USD", "priced", "priced", "USD",
        999, 999, 0, 999, 499, 50, N, 1, 0, 499, 999, None,
    )  # fmt: skip
    [row] = pq.price_rows(main, others, [newest])
    assert [r.cc for r in row.regions] == ["gb", "us"]
    assert row.last_change is not None and row.last_change.observed_at == T
    assert row.last_change.new_historical_low is True
    doc = row.to_json()
    assert doc["final_price"] == 499 and doc["at_historical_low"] is True
    assert doc["historical_low_at"] == "2025-08-17T12:00:00+00:00"
    assert "lowest_90d" not in doc and "history" not in doc
    assert doc["regions"][0] == {
        "cc": "gb", "status": "priced", "currency": "GBP", "initial_price": 799,
        "final_price": 799, "discount_percent": 0,
    }  # fmt: skip
    assert doc["last_change"]["kind"] == "discount_started"
