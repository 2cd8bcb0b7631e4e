"""MySQL sink: rows/s of 100k change events through the sink's batched writes vs one-row commits.

Runs in a throwaway database on the local MariaDB (``make up``), dropped afterwards. The sink
path is the code the sink agent runs (``storage.write_changes`` on a started ``Database``
service, batches of ``SINK_BATCH_SIZE``); the baseline is the original pipeline's way: one
INSERT and one COMMIT per row, same statement, same data, same server, same run.
Also reported: observations/s through ``write_observations`` (price_current + price_history).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import aiomysql

from steamprice.database import Database, connect_kwargs
from steamprice.metrics import Metrics
from steamprice.models import Observation, PriceChange
from steamprice.settings import load_settings
from steamprice.storage import (
    INSERT_PRICE_CHANGES,
    price_change_rows,
    write_changes,
    write_observations,
)

EVENTS = 100_000
APPS = 20_000
T0 = datetime(2025, 8, 17, tzinfo=UTC)
TARGET_RATIO = 20.0


def make_changes() -> list[PriceChange]:
    events = []
    for i in range(EVENTS):
        app, step = 10 + i % APPS, i // APPS
        old, new = (1999, 999) if step % 2 == 0 else (999, 1999)
        events.append(
            PriceChange(
                event_id=f"bench-{app}-{step:04d}".ljust(40, "0"),
                app_id=app,
                cc="us",
                kind="discount_started" if new < old else "discount_ended",
                old_status="priced",
                new_status="priced",
                old_currency="USD",
                new_currency="USD",
                old_initial=1999,
                old_final=old,
                old_discount=0 if old == 1999 else 50,
                new_initial=1999,
                new_final=new,
                new_discount=0 if new == 1999 else 50,
                observed_at=T0 + timedelta(hours=step + 1, seconds=app),
                previous_observed_at=T0 + timedelta(hours=step, seconds=app),
                new_historical_low=step == 0,
                historical_low=999,
                lowest_90d=999,
            )
        )
    return events


def make_observations(changes: list[PriceChange]) -> list[Observation]:
    return [
        Observation(
            app_id=e.app_id,
            cc=e.cc,
            status="priced",
            currency="USD",
            initial=e.new_initial,
            final=e.new_final,
            discount_percent=e.new_discount,
            observed_at=e.observed_at,
            obs_id=e.event_id[:24],
        )
        for e in changes
    ]


async def count(db: Database, table: str) -> int:
    async def work(cur: aiomysql.Cursor) -> int:
        await cur.execute(f"SELECT COUNT(*) FROM {table}")
        return int((await cur.fetchone())[0])

    return await db.transaction("bench", work)


async def truncate(db: Database, *tables: str) -> None:
    async def work(cur: aiomysql.Cursor) -> None:
        for table in tables:
            await cur.execute(f"DELETE FROM {table}")

    await db.transaction("bench", work)


async def one_row_loop(db: Database, events: list[PriceChange]) -> float:
    """The baseline: one INSERT + COMMIT per change, on one connection."""
    conn = await aiomysql.connect(**connect_kwargs(db.settings), autocommit=False)
    try:
        async with conn.cursor() as cur:
            started = time.perf_counter()
            for row in price_change_rows(events):
                await cur.execute(INSERT_PRICE_CHANGES, row)
                await conn.commit()
            return time.perf_counter() - started
    finally:
        conn.close()


async def main() -> dict[str, float]:
    settings = load_settings(mysql_db=f"bench_mysql_{uuid.uuid4().hex[:8]}")
    db = Database(settings, Metrics.create())
    await db.start()
    try:
        await asyncio.wait_for(db.ready.wait(), 60)
        changes = make_changes()
        size = settings.sink_batch_size

        started = time.perf_counter()
        for i in range(0, EVENTS, size):
            await write_changes(db, changes[i : i + size])
        sink_seconds = time.perf_counter() - started
        assert await count(db, "price_changes") == EVENTS

        await truncate(db, "price_changes")
        loop_seconds = await one_row_loop(db, changes)
        assert await count(db, "price_changes") == EVENTS

        observations = make_observations(changes)
        started = time.perf_counter()
        for i in range(0, EVENTS, size):
            await write_observations(db, observations[i : i + size])
        obs_seconds = time.perf_counter() - started
        history_rows = await count(db, "price_history")
    finally:

        async def drop(cur: aiomysql.Cursor) -> None:
            await cur.execute(f"DROP DATABASE IF EXISTS `{settings.mysql_db}`")

        if db.ready.is_set():
            await db.transaction("bench", drop)
        await db.stop()

    sink_rate = EVENTS / sink_seconds
    loop_rate = EVENTS / loop_seconds
    ratio = sink_rate / loop_rate
    print(f"change events:        {EVENTS:,} ({APPS:,} apps), batches of {size}")
    print(f"sink (batched):       {sink_rate:10,.0f} rows/s  ({sink_seconds:.1f} s)")
    print(f"one-row + commit:     {loop_rate:10,.0f} rows/s  ({loop_seconds:.1f} s)")
    print(f"ratio:                {ratio:10.1f}x  (target >= {TARGET_RATIO:.0f}x)")
    print(
        f"observations (current + history): {EVENTS / obs_seconds:,.0f} obs/s"
        f" ({obs_seconds:.1f} s, {history_rows:,} history rows)"
    )
    return {
        "sink_rows_per_second": round(sink_rate),
        "one_row_commit_rows_per_second": round(loop_rate),
        "ratio": round(ratio, 1),
        "observations_per_second": round(EVENTS / obs_seconds),
    }
