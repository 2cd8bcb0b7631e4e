"""The "Steam prices" Grafana dashboard: every panel's SQL, expanded as Grafana expands it, runs
on MariaDB (in MySQL 8's sql_mode) against data the sink wrote, and returns the expected rows.

Expansion mirrors Grafana: the frontend replaces template variables (a single-value string is
inserted raw with ``'`` doubled, ``$__searchFilter`` becomes ``text%``), then the MySQL backend
expands macros (``pkg/tsdb/mysql/macros.go``: ``$__timeFilter(c)`` is
``c BETWEEN FROM_UNIXTIME(from) AND FROM_UNIXTIME(to)``, ``$__timeGroup(c,'1h')`` is
``UNIX_TIMESTAMP(c) DIV 3600 * 3600`` ...) and refuses queries naming user() and friends.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiomysql
import pytest

from steamprice.database import connect_kwargs
from steamprice.models import Observation, PriceHistory, PriceState
from steamprice.pricing import apply_observation
from steamprice.storage import write_changes, write_observations
from tests.support.database import Db
from tests.support.infra import REPO

pytestmark = pytest.mark.filterwarnings("ignore:.*exists")

DASHBOARD = REPO / "monitoring" / "grafana" / "dashboards" / "steamprice-prices.json"
NOW = datetime.now(UTC).replace(microsecond=0)
FROM, TO = NOW - timedelta(days=7), NOW
NAMES = {10: "Half-Life", 20: "Portal", 30: "Dota 2", 40: "Tiny Game", 50: "Old Sale"}

# Grafana's own patterns (public/app/features/variables/utils.ts, pkg/tsdb/mysql/macros.go).
VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\${(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?}")
MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
RESTRICTED = re.compile(
    r"(?im)([\s]*show[\s]+grants|[\s,]session_user\([^\)]*\)|[\s,]current_user(\([^\)]*\))?"
    r"|[\s,]system_user\([^\)]*\)|[\s,]user\([^\)]*\))([\s,;]|$)"
)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def interpolate(sql: str, variables: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g is not None)
        if name not in variables:
            return m.group(0)  # not a variable of ours: a macro, left to the backend
        return variables[name].replace("'", "''")

    return VARIABLE.sub(one, sql)


def expand_macros(sql: str, start: int, end: int) -> str:
    assert not RESTRICTED.search(sql), "Grafana refuses queries naming user() and friends"

    def group(column: str, interval: str) -> str:
        m = re.fullmatch(r"(\d+)([smhdw])", interval.strip("'\""))
        assert m, f"interval {interval!r}"
        seconds = int(m.group(1)) * UNITS[m.group(2)]
        return f"UNIX_TIMESTAMP({column}) DIV {seconds} * {seconds}"

    def one(m: re.Match[str]) -> str:
        name, args = m.group(1), [a.strip(" ") for a in m.group(2).split(",")]
        if name in ("__time", "__timeEpoch"):
            return f"UNIX_TIMESTAMP({args[0]}) as time_sec"
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN FROM_UNIXTIME({start}) AND FROM_UNIXTIME({end})"
        if name == "__timeFrom":
            return f"FROM_UNIXTIME({start})"
        if name == "__timeTo":
            return f"FROM_UNIXTIME({end})"
        if name == "__timeGroup":
            return group(args[0], args[1])
        if name == "__timeGroupAlias":
            return group(args[0], args[1]) + ' AS "time"'
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {start} AND {args[0]} <= {end}"
        raise AssertionError(f"unknown macro ${name}")

    return MACRO.sub(one, sql)


def test_expansion_matches_grafanas_examples() -> None:
    sql = "SELECT $__timeGroupAlias(t, '5m'), 1 WHERE $__timeFilter(t) AND cc = '$cc'"
    assert expand_macros(interpolate(sql, {"cc": "it's"}), 1494410783, 1494410983) == (
        'SELECT UNIX_TIMESTAMP(t) DIV 300 * 300 AS "time", 1 WHERE'
        " t BETWEEN FROM_UNIXTIME(1494410783) AND FROM_UNIXTIME(1494410983) AND cc = 'it''s'"
    )
    with pytest.raises(AssertionError):
        expand_macros("SELECT user()", 0, 1)


def day(n: float) -> datetime:
    return NOW - timedelta(days=n)


def naive(n: float) -> datetime:
    return day(n).replace(tzinfo=None)


def obs(
    app: int, days_ago: float, final: int | None, initial: int = 1999, cc: str = "us"
) -> Observation:
    priced = final is not None
    return Observation(
        app_id=app,
        cc=cc,
        status="priced" if priced else "no_price",
        currency=("GBP" if cc == "gb" else "USD") if priced else None,
        initial=initial if priced else None,
        final=final,
        discount_percent=round(100 - 100 * final / initial) if priced else None,
        observed_at=day(days_ago),
        obs_id=f"{app}-{cc}-{days_ago}",
    )


SEED = [
    obs(10, 9, 1999), obs(10, 3, 999), obs(10, 1, 1499), obs(10, 6, 1599, 1599, cc="gb"),
    obs(20, 6, 999, 999), obs(20, 2, 499, 999),
    obs(30, 6, None),
    obs(40, 5, 1999), obs(40, 4, 1599),
    obs(50, 6, 199), obs(50, 4, 1999), obs(50, 1, 999),
]  # fmt: skip


@pytest.fixture
async def seeded() -> AsyncIterator[Db]:
    """One database for every panel: the sink's own writers, changes from the change agent's
    own rules, app names as SteamSpy would fill them."""
    d = Db()
    service = d.service
    await service.start()
    await asyncio.wait_for(service.ready.wait(), 30)
    try:
        ordered = sorted(SEED, key=lambda o: o.observed_at)
        await write_observations(service, ordered)
        states: dict[tuple[int, str], PriceState] = {}
        histories: dict[tuple[int, str], PriceHistory] = {}
        events = []
        for o in ordered:
            key = (o.app_id, o.cc)
            applied = apply_observation(states.get(key), o, lambda k=key: histories.get(k))
            if applied.state is not None:
                states[key] = applied.state
            if applied.history is not None:
                histories[key] = applied.history
            events.extend(applied.events)
        await write_changes(service, events)
        for app, name in NAMES.items():
            await d.query("UPDATE apps SET name = %s WHERE app_id = %s", (name, app))
        yield d
    finally:
        await service.stop()
        await d.query(f"DROP DATABASE IF EXISTS `{d.name}`")


@pytest.fixture
async def empty() -> AsyncIterator[Db]:
    """A fresh install: the schema, and not one row yet."""
    d = Db()
    await d.service.start()
    await asyncio.wait_for(d.service.ready.wait(), 30)
    try:
        yield d
    finally:
        await d.service.stop()
        await d.query(f"DROP DATABASE IF EXISTS `{d.name}`")


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def mysql_panels() -> dict[str, str]:
    """title -> SQL of every MySQL panel."""
    found = {}
    for panel in dashboard()["panels"]:
        for t in panel.get("targets", []):
            if t.get("datasource", panel["datasource"])["uid"] == "mysql":
                found[panel["title"]] = t["rawSql"]
    return found


async def run(db: Db, sql: str, **variables: str) -> list[dict[str, Any]]:
    """The query as Grafana would send it, on a session like Grafana's on MySQL 8 (UTC)."""
    expanded = expand_macros(
        interpolate(sql, variables), int(FROM.timestamp()), int(TO.timestamp())
    )
    conn = await aiomysql.connect(**connect_kwargs(db.settings), cursorclass=aiomysql.DictCursor)
    try:
        async with conn.cursor() as cur:
            await cur.execute(expanded)
            return [dict(r) for r in await cur.fetchall()]
    finally:
        conn.close()


def money(value: Any) -> float | None:
    return None if value is None else float(Decimal(value))


async def test_template_variables_list_regions_and_searchable_apps(seeded: Db) -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert set(variables) == {"cc", "app"}
    regions = await run(seeded, variables["cc"]["query"])
    assert [r["cc"] for r in regions] == ["gb", "us"]
    apps = await run(seeded, variables["app"]["query"], cc="us", __searchFilter="%")
    assert [(r["__value"], r["__text"]) for r in apps] == [
        (10, "Half-Life (10)"),
        (20, "Portal (20)"),
        (30, "Dota 2 (30)"),
        (40, "Tiny Game (40)"),
        (50, "Old Sale (50)"),
    ]
    typed = await run(seeded, variables["app"]["query"], cc="us", __searchFilter="Port%")
    assert [r["__value"] for r in typed] == [20]
    by_id = await run(seeded, variables["app"]["query"], cc="gb", __searchFilter="1%")
    assert [r["__value"] for r in by_id] == [10]


async def test_every_panel_returns_the_expected_rows(seeded: Db) -> None:
    panels = mysql_panels()
    results = {title: await run(seeded, sql, cc="us", app="10") for title, sql in panels.items()}
    assert set(results) == {
        "Priced apps in $cc",
        "On sale in $cc",
        "Changes in range",
        "Price history of $app in $cc",
        "Latest changes in $cc",
        "Biggest discounts now in $cc",
        "At their historical low today",
    }
    assert results["Priced apps in $cc"] == [{"apps": 4}]
    assert results["On sale in $cc"] == [{"apps": 4}]
    assert results["Changes in range"] == [{"changes": 6}]

    # A step line: the period that began before the range starts at its left edge, the open
    # period is repeated at its right edge.
    points = [
        (r["time"], money(r["price"]), money(r["list_price"]))
        for r in results["Price history of $app in $cc"]
    ]
    start, end = FROM.replace(tzinfo=None), TO.replace(tzinfo=None)
    assert points == [
        (start, 19.99, 19.99),
        (naive(3), 9.99, 19.99),
        (naive(1), 14.99, 19.99),
        (end, 14.99, 19.99),
    ]

    latest = [
        (
            r["app_id"],
            r["app"],
            r["kind"],
            money(r["old_price"]),
            money(r["new_price"]),
            r["new_low"],
        )
        for r in results["Latest changes in $cc"]
    ]
    assert latest == [
        (10, "Half-Life", "discount_changed", 9.99, 14.99, 0),
        (50, "Old Sale", "discount_started", 19.99, 9.99, 0),
        (20, "Portal", "discount_started", 9.99, 4.99, 1),
        (10, "Half-Life", "discount_started", 19.99, 9.99, 1),
        (40, "Tiny Game", "discount_started", 19.99, 15.99, 1),
        (50, "Old Sale", "discount_ended", 1.99, 19.99, 0),
    ]
    assert [r["time"] for r in results["Latest changes in $cc"]][:3] == [
        naive(1),
        naive(1),
        naive(2),
    ]

    discounts = [
        (r["app_id"], r["discount"], money(r["price"]), r["since"])
        for r in results["Biggest discounts now in $cc"]
    ]
    assert discounts == [
        (20, 50, 4.99, naive(2)),
        (50, 50, 9.99, naive(1)),
        (10, 25, 14.99, naive(1)),
        (40, 20, 15.99, naive(4)),
    ]
    lows = [
        (r["app_id"], r["app"], money(r["price"]), r["since"])
        for r in results["At their historical low today"]
    ]
    # Not 10 (9.99 three days ago) nor 50 (1.99 six days ago): they were cheaper before.
    assert lows == [(20, "Portal", 4.99, naive(2)), (40, "Tiny Game", 15.99, naive(4))]


async def test_the_region_variable_filters_every_panel(seeded: Db) -> None:
    for title, sql in mysql_panels().items():
        rows = await run(seeded, sql, cc="gb", app="10")
        if title == "Priced apps in $cc":
            assert rows == [{"apps": 1}]
        elif title == "Price history of $app in $cc":
            assert [money(r["price"]) for r in rows] == [15.99, 15.99]
        elif title in ("On sale in $cc", "Changes in range"):
            assert list(rows[0].values()) == [0], title
        else:
            assert rows == [], title


async def test_every_query_is_valid_on_an_empty_database(empty: Db) -> None:
    """A fresh install: no region and no app to choose, so Grafana gives both variables the
    empty value; every query must still run (``app_id =  AND`` was a syntax error)."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert await run(empty, variables["cc"]["query"]) == []
    assert await run(empty, variables["app"]["query"], cc="", __searchFilter="%") == []
    for title, sql in mysql_panels().items():
        rows = await run(empty, sql, cc="", app="")
        if title in ("Priced apps in $cc", "On sale in $cc", "Changes in range"):
            assert list(rows[0].values()) == [0], title
        else:
            assert rows == [], title


async def test_an_empty_app_variable_shows_no_history(seeded: Db) -> None:
    """Prices in one region only: the app variable of another region has no options."""
    history = mysql_panels()["Price history of $app in $cc"]
    assert await run(seeded, history, cc="us", app="") == []
    assert await run(seeded, history, cc="jp", app="10") == []
    assert len(await run(seeded, history, cc="us", app="10")) == 4
