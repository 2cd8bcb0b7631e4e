"""Price pages: server time per page at 200,000 tracked apps in 2 regions, on a real worker.

Fills a throwaway database (200k apps, 400k current prices, about a million history periods and
600k changes over the last year, names on all but 2% of the apps), builds ``price_lows`` with
migration 020's own backfill statement (timed: what an upgrade costs), starts a real worker on
it and asks each page many times. The server time is the handler's own ``Server-Timing``
(parameters, every query, the HTML or JSON), the wall time what the client saw over HTTP.
Everything is removed afterwards.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiomysql

from steamprice.database import connect_kwargs, migrate, migrations
from steamprice.settings import load_settings
from steamprice.storage import multi_row_insert
from tests.support.processes import Pipeline

APPS = 200_000
REGIONS = (("us", "USD", 1.0), ("de", "EUR", 0.9))
UNPRICED = 0.15
NAMELESS = 0.02
ROUNDS = 15  # requests per page (after one warm-up)
CHUNK = 5_000
PRICE_POINTS = (99, 199, 299, 499, 799, 999, 1499, 1999, 2499, 2999, 3999, 4999, 5999, 6999)
DISCOUNTS = (10, 15, 20, 25, 33, 40, 50, 60, 66, 75, 80, 90)
WORDS = (
    "Space Dragon Farm Quest Tower Racing Legends Shadow Puzzle Island Zombie Galaxy Kingdom"
    " Dungeon Simulator Tactics Ninja Pirate Robot Castle Hero Survival City Ocean Forest"
).split()

INSERTS = {
    "apps": "INSERT INTO apps (app_id, name, tags) VALUES (%s, %s, %s)",
    "price_current": (
        "INSERT INTO price_current (app_id, cc, status, currency, initial_price, final_price,"
        " discount_percent, observed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    ),
    "price_history": (
        "INSERT INTO price_history (app_id, cc, valid_from, valid_to, status, currency,"
        " initial_price, final_price, discount_percent, last_observed_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    ),
    "price_changes": (
        "INSERT INTO price_changes (event_id, app_id, cc, kind, currency, old_initial, old_final,"
        " old_discount, new_initial, new_final, new_discount, observed_at, old_status, new_status,"
        " old_currency, previous_observed_at) VALUES"
        " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    ),
}


def catalog(now: datetime) -> dict[str, list[tuple[Any, ...]]]:
    """Deterministic rows of every table; each app's periods cover the year before ``now``."""
    rng = random.Random(16)
    rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in INSERTS}
    year_ago = now - timedelta(days=365)
    for i in range(APPS):
        app_id = 10 * i + 10
        name = None if rng.random() < NAMELESS else f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i}"
        rows["apps"].append((app_id, name, "{}"))
        unpriced = rng.random() < UNPRICED
        base = rng.choice(PRICE_POINTS)
        for cc, currency, factor in REGIONS:
            if unpriced:
                rows["price_history"].append(
                    (app_id, cc, year_ago, None, "no_price", None, None, None, None, now)
                )
                rows["price_current"].append((app_id, cc, "no_price", None, None, None, None, now))
                continue
            initial = max(int(base * factor) // 10 * 10 + 9, 9)
            hours = rng.sample(range(1, 365 * 24), rng.choice((0, 1, 2, 2, 3, 4, 6)))
            starts = [year_ago + timedelta(hours=h) for h in [0, *sorted(hours)]]
            prices = []
            for n in range(len(starts)):
                discount = rng.choice(DISCOUNTS) if n % 2 else 0
                prices.append((initial, initial * (100 - discount) // 100, discount))
            for n, (start, (ini, fin, disc)) in enumerate(zip(starts, prices, strict=True)):
                end = starts[n + 1] if n + 1 < len(starts) else None
                last = end - timedelta(seconds=1) if end else now
                rows["price_history"].append(
                    (app_id, cc, start, end, "priced", currency, ini, fin, disc, last)
                )
                if n:
                    o_ini, o_fin, o_disc = prices[n - 1]
                    kind = "discount_started" if disc else "discount_ended"
                    rows["price_changes"].append(
                        (f"bench{app_id:08d}{cc}{n:02d}".ljust(40, "0"), app_id, cc, kind,
                         currency, o_ini, o_fin, o_disc, ini, fin, disc, start, "priced",
                         "priced", currency, starts[n - 1])
                    )  # fmt: skip
            ini, fin, disc = prices[-1]
            rows["price_current"].append((app_id, cc, "priced", currency, ini, fin, disc, now))
    return rows


async def fill(settings: Any, now: datetime) -> dict[str, float]:
    await migrate(settings)
    started = time.perf_counter()
    rows = catalog(now)
    print(
        "generated "
        + ", ".join(f"{len(v):,} {k}" for k, v in rows.items())
        + f" in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    backfill = next(
        s
        for _, name, statements in migrations()
        if name.startswith("020_")
        for s in statements
        if s.startswith("INSERT INTO price_lows")
    )
    conn = await aiomysql.connect(**connect_kwargs(settings), autocommit=False)
    try:
        async with conn.cursor() as cur:
            started = time.perf_counter()
            for table, statement in INSERTS.items():
                for i in range(0, len(rows[table]), CHUNK):
                    await cur.execute(multi_row_insert(statement, rows[table][i : i + CHUNK]))
                await conn.commit()
            fill_seconds = time.perf_counter() - started
            started = time.perf_counter()
            await cur.execute(backfill)
            await conn.commit()
            backfill_seconds = time.perf_counter() - started
            await cur.execute("SELECT COUNT(*) FROM price_lows")
            (lows,) = await cur.fetchone()
            await cur.execute("ANALYZE TABLE apps, price_current, price_history, price_changes,"
                              " price_lows")  # fmt: skip
            await cur.fetchall()
    finally:
        conn.close()
    print(
        f"inserted in {fill_seconds:.1f} s; 020's backfill of {lows:,} lows: {backfill_seconds:.1f} s"
    )
    return {"fill_seconds": fill_seconds, "lows_backfill_seconds": backfill_seconds}


def pages(now: datetime) -> dict[str, str]:
    deep_cursor = (now - timedelta(days=200)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "~" + "z" * 40
    return {
        "prices (default: biggest discount)": "/prices",
        "prices sort=name": "/prices?sort=name",
        "prices sort=price": "/prices?sort=price",
        "prices at_low=1": "/prices?at_low=1",
        "prices min_discount=50": "/prices?min_discount=50",
        "prices cc=de min_discount=30 at_low=1 sort=price": (
            "/prices?cc=de&min_discount=30&at_low=1&sort=price"
        ),
        "prices q=dragon (substring of names)": "/prices?q=dragon",
        "prices q=dragon castle (rare)": "/prices?q=dragon+castle",
        "prices q=1234560 (an app id)": "/prices?q=1234560",
        "prices page 100 (offset 4,950)": "/prices?page=100",
        "prices sort=name page 201 (offset 10,000, the deepest)": "/prices?sort=name&page=201",
        "prices page 201 (offset 10,000, the deepest)": "/prices?page=201",
        "api/prices": "/api/prices",
        "apps/<id> (the app with the most changes)": "/apps/{app}",
        "api/apps/<id>": "/api/apps/{app}",
        "changes": "/changes",
        "changes cc=de kind=discount_ended": "/changes?cc=de&kind=discount_ended",
        "changes before=200 days ago": f"/changes?before={deep_cursor}",
        "api/changes": "/api/changes",
    }


async def measure(url: str) -> tuple[list[float], list[float], int]:
    server, wall = [], []
    status = 0
    async with aiohttp.ClientSession() as session:
        for n in range(ROUNDS + 1):
            started = time.perf_counter()
            async with session.get(url) as r:
                await r.read()
                status = r.status
                timing = r.headers.get("Server-Timing", "")
            took = time.perf_counter() - started
            if n:  # the first request warms the caches and the pool
                server.append(float(timing.split("dur=")[1]) if "dur=" in timing else float("nan"))
                wall.append(took * 1000)
    return server, wall, status


async def busiest_app(settings: Any) -> int:
    conn = await aiomysql.connect(**connect_kwargs(settings))
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT app_id FROM price_changes GROUP BY app_id ORDER BY COUNT(*) DESC LIMIT 1"
            )
            return int((await cur.fetchone())[0])
    finally:
        conn.close()


async def main() -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    db = f"bench_pages_{tag}"
    settings = load_settings(mysql_db=db)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        pipeline = Pipeline(Path(tmp), MYSQL_DB=db, STEAM_COUNTRIES="us,de")
        pipeline.db = db  # dropped by close()
        try:
            results.update(await fill(settings, now))
            app = await busiest_app(settings)
            worker = pipeline.worker()
            await worker.start()
            print(f"\n{'page':52} {'server ms':>22} {'wall ms':>10}  status")
            print(f"{'':52} {'median':>10} {'p95':>11} {'median':>10}")
            for label, path in pages(now).items():
                server, wall, status = await measure(worker.url + path.format(app=app))
                p95 = statistics.quantiles(server, n=20)[-1]
                median = statistics.median(server)
                print(
                    f"{label:52} {median:10.1f} {p95:11.1f} {statistics.median(wall):10.1f}"
                    f"  {status}",
                    flush=True,
                )
                if status != 200:
                    raise SystemExit(f"{path} answered {status}")
                results[label] = {
                    "server_ms_median": round(median, 1),
                    "server_ms_p95": round(p95, 1),
                }
        finally:
            await pipeline.close()
    worst = max(v["server_ms_median"] for v in results.values() if isinstance(v, dict))
    print(f"\nslowest page (median server time): {worst:.1f} ms")
    results["slowest_median_ms"] = worst
    results["cores"] = os.cpu_count()
    return results
