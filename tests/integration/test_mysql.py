"""The MySQL schema and sink SQL on the real MariaDB: migrations, idempotence, bad rows, indexes.

Sessions run with MySQL 8's default sql_mode (see ``steamprice.database.SQL_MODE``), so what
passes here does not depend on MariaDB's laxer defaults.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomysql
import pytest

from steamprice import discount_ends
from steamprice.batches import ObservedBatch
from steamprice.database import IN_LIST_MAX, SQL_DIR, Database, migrate, migrations
from steamprice.enddates import Ask
from steamprice.models import Observation, PriceChange
from steamprice.storage import write_batches, write_changes, write_observations
from tests.support.database import Db
from tests.support.infra import MYSQL
from tests.support.records import price_change

pytestmark = pytest.mark.filterwarnings("ignore:.*exists")  # IF NOT EXISTS notes

T = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)
N = T.replace(tzinfo=None)
TABLES = ("apps", "price_current", "price_history", "price_changes")


def o(app_id: int, minutes: int, final: int | None, cc: str = "us") -> Observation:
    priced = final is not None
    return Observation(
        app_id=app_id,
        cc=cc,
        status="priced" if priced else "no_price",
        currency="USD" if priced else None,
        initial=1999 if priced else None,
        final=final,
        discount_percent=(100 - final * 100 // 1999) if priced and final < 1999 else 0,
        observed_at=T + timedelta(minutes=minutes),
        obs_id=f"{app_id}-{cc}-{minutes}",
    )


def change(app_id: int, minutes: int, old: int, new: int) -> PriceChange:
    """A discount starting (``new < old``) or ending on ``app_id``, ``minutes`` after T."""
    return price_change(
        app_id,
        event_id=f"ev-{app_id}-{minutes}",
        kind="discount_started" if new < old else "discount_ended",
        old_final=old,
        new_final=new,
        observed_at=T + timedelta(minutes=minutes),
        previous_observed_at=T,
        new_historical_low=new < old,
        historical_low=min(old, new),
        lowest_90d=old,
    )


async def started(d: Db) -> Database:
    await d.service.start()
    await asyncio.wait_for(d.service.ready.wait(), 30)
    return d.service


# --- migrations -------------------------------------------------------------------------------


async def test_migrations_create_the_schema_once_even_when_two_workers_start_together(
    db: Db,
) -> None:
    names = [name for _, name, _ in migrations()]
    assert names[:4] == [
        "001_initial.sql",
        "002_price_history.sql",
        "003_price_history_backfill.sql",
        "004_price_changes_lowest_90d.sql",
    ]
    first, second = await asyncio.gather(migrate(db.settings), migrate(db.settings))
    assert sorted(first + second) == names  # each applied exactly once, by one of them
    assert await migrate(db.settings) == []
    recorded = await db.query("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [name for _, name in recorded] == names
    keys = await db.query(
        "SELECT index_name, GROUP_CONCAT(column_name ORDER BY seq_in_index)"
        " FROM information_schema.statistics WHERE table_schema = %s"
        " AND table_name = 'price_history' GROUP BY index_name ORDER BY index_name",
        (db.name,),
    )
    assert keys == [
        ("idx_price_history_from", "valid_from"),
        ("idx_price_history_open", "app_id,cc,valid_to"),
        ("PRIMARY", "app_id,cc,valid_from"),
    ]
    columns = await db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s"
        " AND table_name = 'price_changes' AND column_name = 'lowest_90d'",
        (db.name,),
    )
    assert columns == [("lowest_90d",)]
    # The CHECK constraint holds on both servers: a period cannot end before it starts.
    with pytest.raises(aiomysql.OperationalError) as refused:
        await db.query(
            "INSERT INTO price_history (app_id, cc, valid_from, valid_to, status, last_observed_at)"
            " VALUES (1, 'us', %s, %s, 'no_price', %s)",
            (N, N - timedelta(hours=1), N),
        )
    assert refused.value.args[0] in (3819, 4025)


async def test_a_migration_interrupted_after_its_ddl_is_rerun_without_error(db: Db) -> None:
    await migrate(db.settings)
    # As if the process died after 004's ALTER but before it was recorded.
    await db.query("DELETE FROM schema_migrations WHERE version IN (2, 4)")
    assert await migrate(db.settings) == [
        "002_price_history.sql",
        "004_price_changes_lowest_90d.sql",
    ]


async def test_upgrade_from_the_first_schema_backfills_history(db: Db, tmp_path: Path) -> None:
    shutil.copy(SQL_DIR / "001_initial.sql", tmp_path / "001_initial.sql")
    assert await migrate(db.settings, tmp_path) == ["001_initial.sql"]
    await db.query(
        "INSERT INTO price_current (app_id, cc, status, currency, initial_price, final_price,"
        " discount_percent, observed_at) VALUES (10, 'us', 'priced', 'USD', 1999, 999, 50, %s),"
        " (20, 'us', 'no_price', NULL, NULL, NULL, NULL, %s)",
        (N + timedelta(days=3), N + timedelta(days=1)),
    )
    await db.query(
        "INSERT INTO price_changes (event_id, app_id, cc, kind, currency, old_initial, old_final,"
        " old_discount, new_initial, new_final, new_discount, observed_at, old_status,"
        " new_status, old_currency, previous_observed_at)"
        " VALUES ('e1', 10, 'us', 'discount_started', 'USD', 1999, 1999, 0, 1999, 999, 50, %s,"
        " 'priced', 'priced', 'USD', %s)",
        (N + timedelta(days=2), N),
    )
    applied = await migrate(db.settings)
    assert applied[:3] == [
        "002_price_history.sql",
        "003_price_history_backfill.sql",
        "004_price_changes_lowest_90d.sql",
    ]
    history = await db.query(
        "SELECT app_id, valid_from, valid_to, status, final_price, last_observed_at"
        " FROM price_history ORDER BY app_id, valid_from"
    )
    day = timedelta(days=1)
    assert history == [
        (10, N, N + 2 * day, "priced", 1999, N),
        (10, N + 2 * day, None, "priced", 999, N + 3 * day),
        (20, N + day, None, "no_price", None, N + day),
    ]


async def test_sessions_behave_like_mysql8_whatever_the_server_defaults(db: Db) -> None:
    service = await started(db)

    async def work(cur: aiomysql.Cursor) -> tuple[Any, ...]:
        await cur.execute("SELECT @@SESSION.sql_mode, @@SESSION.time_zone")
        return tuple(await cur.fetchone())

    sql_mode, time_zone = await service.transaction("test", work)
    assert time_zone == "+00:00"
    assert {"ONLY_FULL_GROUP_BY", "STRICT_TRANS_TABLES", "NO_ZERO_DATE"} <= set(sql_mode.split(","))


# --- the sink's writes ------------------------------------------------------------------------


async def test_the_same_batches_delivered_twice_leave_the_same_rows(db: Db) -> None:
    service = await started(db)
    observations = [
        [o(1, 0, 1999), o(2, 0, 499), o(1, 0, 1999, cc="gb")],
        [o(1, 10, 999), o(2, 10, 499), o(1, 20, 999)],
        [o(1, 30, 1999), o(2, 30, None)],
    ]
    changes = [[change(1, 10, 1999, 999)], [change(1, 30, 999, 1999), change(2, 30, 499, 499)]]
    for batch in observations:
        await write_observations(service, batch)
    for cbatch in changes:
        await write_changes(service, cbatch)
    once = await db.snapshot()

    history = await db.query(
        "SELECT app_id, cc, valid_from, valid_to, final_price, last_observed_at FROM price_history"
        " ORDER BY app_id, cc, valid_from"
    )
    m = timedelta(minutes=1)
    assert history == [
        (1, "gb", N, None, 1999, N),
        (1, "us", N, N + 10 * m, 1999, N),
        (1, "us", N + 10 * m, N + 30 * m, 999, N + 20 * m),
        (1, "us", N + 30 * m, None, 1999, N + 30 * m),
        (2, "us", N, N + 30 * m, 499, N + 10 * m),
        (2, "us", N + 30 * m, None, None, N + 30 * m),
    ]
    current = await db.query(
        "SELECT app_id, cc, status, final_price, observed_at FROM price_current"
    )
    assert sorted(current) == [
        (1, "gb", "priced", 1999, N),
        (1, "us", "priced", 1999, N + 30 * m),
        (2, "us", "no_price", None, N + 30 * m),
    ]
    assert [r[0] for r in once["price_changes"]] == ["ev-1-10", "ev-1-30", "ev-2-30"]

    # Redelivery: every batch again, the newest first (a consumer restarting from old offsets).
    results = []
    for batch in reversed(observations):
        results.append(await write_observations(service, batch))
    for cbatch in changes:
        results.append(await write_changes(service, cbatch))
    assert await db.snapshot() == once
    assert all(r.rejected == 0 for r in results)
    assert sum(r.written["price_changes"] for r in results) == 0  # nothing new inserted
    lows = await db.query(
        "SELECT lowest_90d, historical_low, new_historical_low FROM price_changes"
    )
    assert sorted(lows) == [(499, 499, 0), (999, 999, 0), (1999, 999, 1)]


async def test_rows_that_cannot_be_stored_are_counted_and_the_rest_is_written(db: Db) -> None:
    service = await started(db)
    bad = dataclasses.replace(o(3, 0, 999), currency="EURO")  # caught before any SQL
    outcome = await write_observations(service, [o(1, 0, 999), bad, o(2, 0, 499)])
    assert outcome.rejected == 1
    assert await db.query("SELECT app_id FROM price_current ORDER BY app_id") == [(1,), (2,)]
    assert (
        db.metrics.registry.get_sample_value(
            "steam_sink_rejected_rows_total", {"sink": "price_current", "reason": "invalid"}
        )
        == 1.0
    )

    # What only the server can refuse is found by splitting the batch: here one value is too
    # long for its column, so that row alone is left out.
    async def work(cur: aiomysql.Cursor, rows: Sequence[tuple[Any, ...]]) -> Counter[str]:
        await cur.executemany("INSERT INTO apps (app_id, owners) VALUES (%s, %s)", rows)
        return Counter({"apps": len(rows)})

    rows = [(100 + i, "x" * (100 if i == 5 else 10)) for i in range(8)]
    result = await service.write_batch("test", rows, work)
    assert [item for item, _ in result.rejected] == [rows[5]]
    assert "1406" in result.rejected[0][1]
    assert result.written["apps"] == 7
    stored = await db.query("SELECT app_id FROM apps WHERE app_id >= 100 ORDER BY app_id")
    assert [a for (a,) in stored] == [100, 101, 102, 103, 104, 106, 107]


async def test_history_and_recent_changes_queries_use_their_indexes(db: Db) -> None:
    service = await started(db)
    # Enough rows that a full scan is not the cheapest plan.
    batches = [
        [o(app, 60 * step, 1999 if (app + step) % 2 else 999) for app in range(1, 301)]
        for step in range(8)
    ]
    for batch in batches:
        await write_observations(service, batch)
    await write_changes(
        service, [change(app, 60 * s, 1999, 999) for app in range(1, 301) for s in range(1, 8)]
    )
    await db.query("ANALYZE TABLE price_history, price_changes")

    async def key_of(sql: str) -> str:
        conn = await aiomysql.connect(**MYSQL, db=db.name, cursorclass=aiomysql.DictCursor)
        try:
            async with conn.cursor() as cur:
                await cur.execute("EXPLAIN " + sql)
                return str((await cur.fetchone())["key"])
        finally:
            conn.close()

    assert (
        await key_of(
            "SELECT * FROM price_history WHERE app_id = 7 AND cc = 'us' ORDER BY valid_from"
        )
        == "PRIMARY"
    )
    day_ago = N + timedelta(hours=7) - timedelta(minutes=30)
    assert (
        await key_of(
            f"SELECT * FROM price_changes WHERE observed_at >= '{day_ago}' ORDER BY observed_at DESC"
        )
        == "idx_price_changes_observed"
    )
    assert (
        await key_of(f"SELECT * FROM price_history WHERE valid_from >= '{day_ago}'")
        == "idx_price_history_from"
    )
    assert await key_of(
        "SELECT * FROM price_history WHERE app_id IN (3, 4) AND valid_to IS NULL"
    ) in ("idx_price_history_open", "PRIMARY")


def checked(minutes: int, *observations: Observation, news: Sequence[bool]) -> ObservedBatch:
    at = T + timedelta(minutes=minutes)
    return ObservedBatch("us", at, f"check-{minutes}", list(observations), list(news))


async def test_batches_store_only_news_and_one_check_each_once(db: Db) -> None:
    service = await started(db)
    first = checked(0, o(1, 0, 1999), o(2, 0, 499), news=[True, True])
    # A re-sweep: app 1 unchanged (not news), app 2 on sale (news), and an unstorable news.
    bad = Observation(3, "us", "priced", "US DOLLARS", 1, 1, 0, T, "bad")
    second = checked(10, o(1, 10, 1999), o(2, 10, 249), bad, news=[False, True, True])
    for batch in (first, second):
        await write_batches(service, [batch])
    once = await db.snapshot()
    current = await db.query("SELECT app_id, final_price, observed_at FROM price_current")
    m = timedelta(minutes=1)
    # App 1's row was not written again: observed_at is when its price was first seen.
    assert sorted(current) == [(1, 1999, N), (2, 249, N + 10 * m)]
    all_checks = "SELECT check_id, cc, checked_at, apps, app_ids FROM price_checks ORDER BY 3"
    checks = await db.query(all_checks)
    assert checks == [
        ("check-0", "us", N, 2, "[1,2]"),
        ("check-10", "us", N + 10 * m, 2, "[1,2]"),  # the unstorable observation is left out
    ]
    # Redelivered, newest first: nothing changes, no check twice.
    results = [await write_batches(service, [b]) for b in (second, first)]
    assert await db.snapshot() == once
    assert await db.query(all_checks) == checks
    assert [r.written["price_checks"] for r in results] == [0, 0]
    assert results[0].rejected == 1
    swept = await db.query(
        "SELECT COUNT(DISTINCT j.app_id) FROM price_checks c, JSON_TABLE(c.app_ids, '$[*]'"
        " COLUMNS (app_id INT UNSIGNED PATH '$')) AS j WHERE c.cc = 'us' AND c.checked_at >= %s",
        (N + 5 * m,),
    )
    assert swept == [(2,)]  # the status query counts both apps as checked since then


async def test_long_id_lists_go_out_as_lists_the_optimizer_reads_by_key(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MariaDB turns an ``IN`` list of 1,000 values or more into a join over a temporary table,
    which a first sweep's big batches got planned as a full join (1-2 s a statement): every
    list holds at most ``IN_LIST_MAX`` ids, each statement is planned by key, and what the
    statements do spans all the lists."""
    service = await started(db)
    apps = range(1, 1201)
    ends = N + timedelta(days=7)
    await db.query(
        "INSERT INTO discount_ends (app_id, cc, initial_price, final_price, since, asked_for,"
        " obs_id, pending, ends_at) VALUES "
        + ",".join(f"({a}, 'us', 1999, 999, %s, %s, 'x', 0, %s)" for a in apps if a % 3 == 0),
        [v for a in apps if a % 3 == 0 for v in (N, N, ends)],
    )
    sent: list[str] = []
    execute = aiomysql.Cursor.execute

    async def spy(cur: aiomysql.Cursor, query: str, args: Any = None) -> Any:
        text = query if args is None else cur.mogrify(query, args)
        sent.append(bytes(text).decode() if isinstance(text, bytes | bytearray) else text)
        return await execute(cur, query, args)

    monkeypatch.setattr(aiomysql.Cursor, "execute", spy)
    batch = checked(0, *(o(a, 0, 999) for a in apps), news=[True] * len(apps))
    await write_batches(service, [batch])
    await write_changes(service, [change(a, 0, 1999, 999) for a in apps])
    asks = [Ask(a, "us", 1999, 499, T, T, f"o-{a}") for a in apps]

    async def ask_and_read(cur: aiomysql.Cursor) -> Any:
        return await discount_ends.record_asks(
            cur, asks, timedelta(days=1)
        ), await discount_ends.end_rows(cur, list(apps))

    (queued, skipped), rows = await service.transaction("test", ask_and_read)
    # Prices that are no discount have no end to copy: not asked for.
    before = len(sent)
    await write_batches(
        service, [checked(1, *(o(a, 1, 1999) for a in range(2001, 2601)), news=[True] * 600)]
    )
    assert not [q for q in sent[before:] if q.startswith("UPDATE price_current p JOIN")]
    monkeypatch.undo()

    assert (queued, skipped) == (1200, 0)
    assert len(rows) == 1200 and all(r.pending for r in rows.values())
    # The known ends reached the rows of every list, not only the first.
    synced = "SELECT app_id FROM {} WHERE discount_ends_at = %s ORDER BY app_id"
    want = [(a,) for a in apps if a % 3 == 0]
    assert await db.query(synced.format("price_current"), (ends,)) == want
    assert await db.query(synced.format("price_changes"), (ends,)) == want
    listed = [q for q in sent if " IN (" in q]
    assert len(listed) >= 5 * 3  # each kind of statement, in three lists at least
    conn = await aiomysql.connect(**MYSQL, db=db.name, cursorclass=aiomysql.DictCursor)
    try:
        async with conn.cursor() as cur:
            for query in listed:
                values = query.split(" IN (", 1)[1].split(")", 1)[0]
                assert values.count(",") + 1 <= IN_LIST_MAX, query[:120]
                await cur.execute("EXPLAIN " + query)
                tables = [str(row["table"]) for row in await cur.fetchall()]
                assert not [t for t in tables if t.startswith("<")], (tables, query[:120])
    finally:
        conn.close()
