"""`steamprice status` on a catalog-sized pipeline: wall time for 200k tracked apps in 2 regions.

Fills a throwaway app-state changelog topic (8 partitions, one record per app, as the schedule
agent writes them) and a throwaway database (``price_current`` for both regions, half of it
older than the recrawl interval), then runs the real command (``python -m steamprice status
--json``, Python start-up included) and checks what it counted. Everything is removed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import aiomysql
from aiokafka import AIOKafkaProducer

from steamprice.database import connect_kwargs, migrate
from steamprice.models import AppState
from steamprice.settings import load_settings
from tests.support.database import drop_database
from tests.support.infra import create_topic, delete_topic

APPS = 200_000
FAILED_EVERY = 1000  # one app in a thousand has failed
PARTITIONS = 8
KAFKA = os.environ.get("TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
ROW_CHUNK = 5_000


async def fill_changelog(topic: str, now: datetime) -> None:
    await create_topic(topic, PARTITIONS, KAFKA)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        pending = []
        for app_id in range(1, APPS + 1):
            state = AppState(
                app_id=app_id,
                tracked_since=now - timedelta(days=3),
                next_due=now + timedelta(seconds=app_id % 21600),
                last_requested=now - timedelta(hours=1),
                failed=app_id % FAILED_EVERY == 0,
            )
            pending.append(
                await producer.send(
                    topic,
                    state.dumps(),
                    key=json.dumps(app_id).encode(),
                    partition=app_id % PARTITIONS,
                )
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def fill_database(db: str, now: datetime) -> None:
    settings = load_settings(mysql_db=db)
    await migrate(settings)
    conn = await aiomysql.connect(**connect_kwargs(settings), autocommit=False)
    try:
        async with conn.cursor() as cur:
            rows = []
            for app_id in range(1, APPS + 1):
                for cc in ("us", "gb"):
                    # Half of the gb prices are older than the recrawl interval: mid-sweep.
                    age = timedelta(hours=7) if cc == "gb" and app_id % 2 else timedelta(hours=1)
                    seen = (now - age).replace(tzinfo=None)
                    rows.append((app_id, cc, "priced", "USD", 999, 999, 0, seen))
                if len(rows) >= ROW_CHUNK:
                    await cur.executemany(
                        "INSERT INTO price_current (app_id, cc, status, currency, initial_price,"
                        " final_price, discount_percent, observed_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        rows,
                    )
                    rows = []
            await conn.commit()
    finally:
        conn.close()


async def cleanup(topic: str, db: str) -> None:
    await delete_topic(topic, KAFKA)
    await drop_database(db, connect_kwargs(load_settings(), with_db=False))


async def main() -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    app_id, db = f"bench-status-{tag}", f"bench_status_{tag}"
    topic = f"{app_id}-app-state-changelog"
    now = datetime.now(UTC)
    try:
        started = time.monotonic()
        await asyncio.gather(fill_changelog(topic, now), fill_database(db, now))
        print(
            f"filled {APPS:,} app states and {2 * APPS:,} prices in {time.monotonic() - started:.1f} s"
        )

        env = {**os.environ, "APP_ID": app_id, "MYSQL_DB": db, "STEAM_COUNTRIES": "us,gb"}
        env["KAFKA_BROKER"] = f"kafka://{KAFKA}"
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "steamprice",
            "status",
            "--json",
            "--worker-url",
            "",
            "--timeout",
            "300",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"status exited {proc.returncode}: {err.decode()[-2000:]}")
        report = json.loads(out)
        apps, regions = report["apps"], {r["cc"]: r for r in report["regions"]}
        assert apps["tracked"] == APPS and apps["failed"] == APPS // FAILED_EVERY, apps
        assert regions["us"]["swept"] == APPS and regions["gb"]["swept"] == APPS // 2, regions
        print(
            f"steamprice status: {seconds:.1f} s for {APPS:,} apps in 2 regions"
            f" ({APPS / seconds:,.0f} apps/s, Python start-up included);"
            f" gb sweep {regions['gb']['progress']:.1%}"
        )
        return {"apps": APPS, "status_seconds": round(seconds, 2)}
    finally:
        await cleanup(topic, db)
