"""The price pages' SQL on the real MariaDB: the sink's lows, migration 020, every list query.

Expected results are computed here from the rows themselves (``price_history`` for the lows,
``price_current`` for the lists), independently of the SQL under test.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from steamprice.database import SQL_DIR, migrate, migrations
from steamprice.models import Observation
from steamprice.pages import query as pq
from steamprice.storage import write_observations
from tests.support.database import Db

pytestmark = pytest.mark.filterwarnings("ignore:.*exists")

T = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)
N = T.replace(tzinfo=None)
H = timedelta(hours=1)


def obs(app_id: int, hour: int, final: int | None, cc: str = "us", currency: str = "USD",
        initial: int = 1999) -> Observation:  # fmt: skip
    priced = final is not None
    return Observation(
        app_id=app_id,
        cc=cc,
        status="priced" if priced else "no_price",
        currency=currency if priced else None,
        initial=initial if priced else None,
        final=final,
        discount_percent=round(100 - final * 100 / initial) if priced and final < initial else 0,
        observed_at=T + hour * H,
        obs_id=f"{app_id}-{cc}-{hour}",
    )


# Eight hours of prices of six apps in two regions: sales, a return to an old low, an unpriced
# stretch, a currency change, an app that never changes.
ROUNDS: list[list[Observation]] = [
    [obs(1, h, [1999, 999, 1999, 999, 1999, 1499, 1499, 1499][h]) for h in range(8)],
    [obs(2, h, [499, 499, None, None, 399, 399, 499, 499][h]) for h in range(8)],
    [obs(3, h, 2999, initial=2999) for h in range(8)],
    [obs(4, h, [1999, 1599, 1599, 1999, 1999, 1999, 1999, 1999][h], cc="gb", currency="GBP")
     for h in range(8)],
    [obs(4, h, [999, 999, 999, 999, 500, 500, 500, 500][h], cc="us",
         currency="USD" if h < 4 else "EUR", initial=999 if h < 4 else 900) for h in range(8)],
    [obs(5, h, None) for h in range(8)],
    [obs(6, h, [1000, 500, 1000, 500, 250, 250, 1000, 1000][h], initial=1000) for h in range(8)],
]  # fmt: skip
BATCHES = [list(b) for b in zip(*ROUNDS, strict=True)]  # one batch per hour, all apps


def expected_lows(history: Sequence[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """(app, cc, currency) -> (lowest final, latest start at it), from price_history rows."""
    lows: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for app_id, cc, start, status, currency, final in history:
        if status != "priced":
            continue
        key = (app_id, cc, currency)
        old = lows.get(key)
        if old is None or final < old[0] or (final == old[0] and start > old[1]):
            lows[key] = (final, start)
    return lows


HISTORY = "SELECT app_id, cc, valid_from, status, currency, final_price FROM price_history"
LOWS = "SELECT app_id, cc, currency, low_final, low_at FROM price_lows"


async def lows_of(db: Db) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {(a, cc, cur): (low, at) for a, cc, cur, low, at in await db.query(LOWS)}


async def test_the_sink_keeps_the_lows_of_the_history_in_any_order(db: Db) -> None:
    await db.service.start()
    await asyncio.wait_for(db.service.ready.wait(), 30)
    for batch in BATCHES:
        await write_observations(db.service, batch)
    want = expected_lows(await db.query(HISTORY))
    assert await lows_of(db) == want
    assert want[(1, "us", "USD")] == (999, N + 3 * H)  # back at the low: the later start
    assert want[(4, "us", "EUR")] == (500, N + 4 * H)  # a new currency has its own low
    assert (5, "us", None) not in want and not any(k[0] == 5 for k in want)
    snapshot = await db.snapshot()
    # Redelivered, newest batch first: nothing moves.
    for batch in reversed(BATCHES):
        await write_observations(db.service, batch)
    assert await lows_of(db) == want
    assert await db.snapshot() == snapshot


async def test_upgrade_to_020_backfills_lows_and_adds_columns_and_indexes(
    db: Db, tmp_path: Path
) -> None:
    before = [name for version, name, _ in migrations() if version < 20]
    for name in before:
        shutil.copy(SQL_DIR / name, tmp_path / name)
    assert await migrate(db.settings, tmp_path) == before
    rows = [
        (1, "us", N, N + H, "priced", "USD", 1999, 1999, 0, N),
        (1, "us", N + H, N + 2 * H, "priced", "USD", 1999, 999, 50, N + H),
        (1, "us", N + 2 * H, N + 3 * H, "no_price", None, None, None, None, N + 2 * H),
        (1, "us", N + 3 * H, None, "priced", "USD", 1999, 999, 50, N + 3 * H),
        (2, "gb", N, None, "priced", "GBP", 499, 499, 0, N),
    ]
    await db.query(
        "INSERT INTO price_history (app_id, cc, valid_from, valid_to, status, currency,"
        " initial_price, final_price, discount_percent, last_observed_at) VALUES "
        + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows)),
        [v for r in rows for v in r],
    )
    shutil.copy(SQL_DIR / "020_price_pages.sql", tmp_path / "020_price_pages.sql")
    assert await migrate(db.settings, tmp_path) == ["020_price_pages.sql"]
    assert await lows_of(db) == {(1, "us", "USD"): (999, N + 3 * H), (2, "gb", "GBP"): (499, N)}
    for table in ("price_current", "price_changes"):
        [(kind, nullable)] = await db.query(
            "SELECT data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s AND column_name = 'discount_ends_at'",
            (db.name, table),
        )
        assert (kind, nullable) == ("datetime", "YES")
    indexes = await db.query(
        "SELECT table_name, index_name, GROUP_CONCAT(column_name ORDER BY seq_in_index)"
        " FROM information_schema.statistics WHERE table_schema = %s AND index_name IN"
        " ('idx_price_current_price', 'idx_apps_name', 'idx_price_changes_cc',"
        " 'idx_price_changes_kind') GROUP BY table_name, index_name ORDER BY index_name",
        (db.name,),
    )
    assert indexes == [
        ("apps", "idx_apps_name", "name"),
        ("price_changes", "idx_price_changes_cc", "cc,observed_at"),
        ("price_changes", "idx_price_changes_kind", "kind,observed_at"),
        ("price_current", "idx_price_current_price", "cc,final_price"),
    ]
    # Interrupted after its DDL, before it was recorded: the re-run finishes without error.
    await db.query("DELETE FROM schema_migrations WHERE version = 20")
    shutil.copy(SQL_DIR / "020_price_pages.sql", tmp_path / "020_price_pages.sql")
    assert await migrate(db.settings, tmp_path) == ["020_price_pages.sql"]
    assert await lows_of(db) == {(1, "us", "USD"): (999, N + 3 * H), (2, "gb", "GBP"): (499, N)}


async def test_every_price_list_query_returns_what_the_rows_say(db: Db) -> None:
    await db.service.start()
    await asyncio.wait_for(db.service.ready.wait(), 30)
    for batch in BATCHES:
        await write_observations(db.service, batch)
    names = {1: "Portal", 2: "Portal 2", 3: "50% Off_Simulator", 4: "Zeta", 6: "alpha"}
    for app_id, name in names.items():
        await db.query("UPDATE apps SET name = %s WHERE app_id = %s", (name, app_id))
    current = await db.query(
        "SELECT p.app_id, p.cc, p.status, p.currency, p.initial_price, p.final_price,"
        " p.discount_percent, l.low_final FROM price_current p LEFT JOIN price_lows l"
        " ON l.app_id = p.app_id AND l.cc = p.cc AND l.currency = p.currency"
    )

    def expected(q: pq.PriceQuery) -> list[int]:
        rows = []
        for app_id, cc, status, _, initial, final, discount, low in current:
            name = names.get(app_id)
            if cc != q.cc:
                continue
            if q.min_discount and not (
                discount is not None and discount >= q.min_discount and final < initial
            ):
                continue
            if q.at_low and not (status == "priced" and low is not None and final <= low):
                continue
            if q.sort in ("price", "price_desc") and final is None:
                continue
            if q.q and not (
                (name is not None and q.q.lower() in name.lower())
                or (q.q.isdigit() and int(q.q) == app_id)
            ):
                continue
            rows.append((app_id, name, final, discount))
        key = {
            "discount": lambda r: (-(r[3] if r[3] is not None else -1), -r[0]),
            "price": lambda r: (r[2], r[0]),
            "price_desc": lambda r: (-r[2], -r[0]),
            "name": lambda r: (r[1] is not None, (r[1] or "").lower(), r[0]),
            "app_id": lambda r: r[0],
        }[q.sort]
        return [r[0] for r in sorted(rows, key=key)]

    checked = 0
    for cc, sort, min_discount, at_low, text in itertools.product(
        ("us", "gb"), pq.SORTS, (0, 40), (False, True), ("", "portal", "_", "%", "1", "6")
    ):
        q = pq.PriceQuery(cc, text, min_discount, at_low, sort, per_page=2)
        want = expected(q)
        got: list[int] = []
        for page in range(1, 5):
            rows = await db.query(*pq.price_list_sql(pq.PriceQuery(
                cc, text, min_discount, at_low, sort, page=page, per_page=2)))  # fmt: skip
            got += [r[0] for r in rows[:2]]
            if len(rows) <= 2:
                break
        assert got == want, (q, got, want)
        checked += 1
    assert checked == 2 * len(pq.SORTS) * 2 * 2 * 6
    # The other two queries of a page.
    regions = await db.query(*pq.other_regions_sql([4, 1]))
    assert [(r[0], r[1]) for r in regions] == [(1, "us"), (4, "gb"), (4, "us")]
    assert await db.query(pq.REGIONS_SQL) == [("gb",), ("us",)]
