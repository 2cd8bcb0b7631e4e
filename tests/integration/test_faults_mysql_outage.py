"""The outage rule: the database dies mid-stream for 30 s; every row arrives exactly once.

The worker writes to a private mariadbd (the shared one is never stopped), which is killed
(SIGKILL, as a crash) while observations keep arriving, and restarted 30 s later.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from steamprice.batches import by_partition
from tests.support.infra import PrivateMariaDB, wait_for
from tests.support.prices import priced_entry, send_prices
from tests.support.processes import Pipeline, Worker

T0 = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)
APPS = range(100, 140)
OUTAGE_SECONDS = 30.0


async def send_wave(pipeline: Pipeline, wave: int) -> None:
    """Wave 0: list price; wave 1: even apps on sale; wave 2: list price again (raw answers)."""
    entries = {
        a: priced_entry(1999, 999, 50) if wave == 1 and a % 2 == 0 else priced_entry(1999, 1999, 0)
        for a in APPS
    }
    await send_prices(pipeline, "us", T0 + timedelta(hours=wave), entries)


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
    m = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


async def test_an_outage_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    mariadb = PrivateMariaDB(tmp_path)
    await mariadb.start()
    pipeline = Pipeline(
        tmp_path,
        MYSQL_PORT=str(mariadb.port),
        ENABLE_DISCORD="false",
        # Nothing is seeded, so nothing is fetched; a dead address keeps it so regardless.
        STEAM_STORE_URL="http://127.0.0.1:9",
        SINK_BATCH_SIZE="25",
    )
    worker: Worker | None = None
    try:
        worker = pipeline.worker()
        await worker.start()

        async def rows(sql: str) -> list[tuple[Any, ...]]:
            try:
                return await mariadb.query(pipeline.db, sql)
            except Exception:  # down, or not migrated yet
                return []

        async def checked_at(hours: int) -> bool:
            # Every app's check of that wave is in (unchanged prices only write their check).
            want = (T0 + timedelta(hours=hours)).replace(tzinfo=None)
            got = await rows(f"SELECT SUM(apps) FROM price_checks WHERE checked_at = '{want}'")
            return bool(got) and got[0][0] == len(APPS)

        await send_wave(pipeline, 0)
        await wait_for("wave 0 in price_checks", lambda: checked_at(0))

        await mariadb.kill()
        down_at = time.monotonic()
        await send_wave(pipeline, 1)
        sent_second = False
        seen_down = False

        async def outage_over() -> bool:
            # Polled through the outage: the worker must stay up and say what is happening.
            nonlocal sent_second, seen_down
            assert worker is not None
            health = await worker.health()  # raises if the worker exited
            assert health is not None
            text = await worker.metrics()
            if metric(text, "steam_mysql_up") == 0.0 and metric(
                text, "steam_sink_retries_total", sink="price_current"
            ):
                seen_down = True
            if not sent_second and time.monotonic() - down_at >= OUTAGE_SECONDS / 2:
                await send_wave(pipeline, 2)
                sent_second = True
            return time.monotonic() - down_at >= OUTAGE_SECONDS

        await wait_for("the outage to last 30 s", outage_over, timeout=OUTAGE_SECONDS + 30)
        assert seen_down, "steam_mysql_up never showed 0 with sink retries during the outage"

        await mariadb.start()
        await wait_for("wave 2 in price_checks", lambda: checked_at(2), timeout=60)

        async def all_changes() -> list[tuple[Any, ...]]:
            got = await rows("SELECT COUNT(*) FROM price_changes")
            return got if got and got[0][0] >= 40 else []

        await wait_for("40 price changes", all_changes, timeout=60)

        # Exactly once: the expected rows, no more.
        even = [a for a in APPS if a % 2 == 0]
        changes = await rows(
            "SELECT app_id, kind, old_final, new_final, observed_at FROM price_changes"
            " ORDER BY app_id, observed_at"
        )
        h = [(T0 + timedelta(hours=n)).replace(tzinfo=None) for n in range(3)]
        assert changes == [
            row
            for a in even
            for row in (
                (a, "discount_started", 1999, 999, h[1]),
                (a, "discount_ended", 999, 1999, h[2]),
            )
        ]
        history = await rows(
            "SELECT app_id, valid_from, valid_to, final_price FROM price_history"
            " ORDER BY app_id, valid_from"
        )
        expected_history = []
        for a in APPS:
            if a % 2 == 0:
                expected_history += [
                    (a, h[0], h[1], 1999),
                    (a, h[1], h[2], 999),
                    (a, h[2], None, 1999),
                ]
            else:
                expected_history.append((a, h[0], None, 1999))
        assert history == expected_history
        assert await rows(
            "SELECT COUNT(*), MIN(final_price), MAX(final_price) FROM price_current"
        ) == [(len(APPS), 1999, 1999)]
        # The current price was first observed when it last changed; each check is recorded once.
        assert await rows(
            "SELECT observed_at, COUNT(*) FROM price_current GROUP BY observed_at ORDER BY 1"
        ) == [(h[0], len(APPS) - len(even)), (h[2], len(even))]
        assert await rows(
            "SELECT checked_at, SUM(apps), COUNT(*) FROM price_checks GROUP BY checked_at"
            " ORDER BY checked_at"
        ) == [(at, len(APPS), len(by_partition(APPS, 4))) for at in h]
        assert await rows("SELECT COUNT(*) FROM apps") == [(len(APPS),)]

        # The worker never exited and said what happened.
        assert worker.proc is not None and worker.proc.returncode is None
        text = await worker.metrics()
        assert metric(text, "steam_mysql_up") == 1.0
        assert metric(text, "steam_sink_retries_total", sink="price_current") > 0
        assert metric(text, "steam_sink_retries_total", sink="price_changes") > 0
        log = worker.log()
        assert re.search(r"MySQL write for price_current failed \(OperationalError: \(2003", log)
        assert re.search(r"MySQL write for price_changes succeeded after \d+ retries", log)
        assert "Traceback" not in log
    finally:
        if worker is not None:
            await worker.stop()
        await mariadb.stop()
