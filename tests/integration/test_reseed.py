"""A re-seed right after a price change: coalesced into one re-check, never dropped.

With the production seed dedupe window (SEED_DEDUPE_SECONDS, 60 s): the user seeds an app, its
price changes at the store, and the user seeds it again (three times) a moment later. The new
price must reach MySQL at the end of the window (not at the next sweep, hours later), with one
request for the three seeds, a log line, and the pending re-check shown by ``steamprice status``.
"""

from __future__ import annotations

import json
import time

from tests.support.checks import Quiet, appdetails_requests, metric_or_zero, wait_until_right
from tests.support.fakes import FakeSteam
from tests.support.infra import wait_for
from tests.support.processes import Pipeline

APP = 730


async def price_of(pipeline: Pipeline) -> int | None:
    rows = await pipeline.query("SELECT final_price FROM price_current WHERE app_id = %s", (APP,))
    return int(rows[0][0]) if rows else None


async def test_a_reseed_inside_the_window_brings_the_new_price_at_its_end(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    steam.set_price(APP, "us", 1999, 1999, 0)
    worker = pipeline.worker()
    await worker.start()
    seeded = time.monotonic()  # the fake's clock; the window starts after this
    assert "Sent 1 app ids" in await pipeline.cli("seed", str(APP))

    async def first_price() -> bool:
        return await price_of(pipeline) == 1999

    await wait_for("the first price", first_price, timeout=60)
    assert len(appdetails_requests(steam)) == 1

    steam.set_price(APP, "us", 1999, 999, 50)  # a sale starts
    for _ in range(3):
        assert "Sent 1 app ids" in await pipeline.cli("seed", str(APP))

    async def coalesced() -> bool:
        text = await worker.metrics()
        n = metric_or_zero(
            text, "steam_games_processed_total", task="schedule", status="recheck_coalesced"
        )
        return n >= 1

    await wait_for("the re-seed to be coalesced", coalesced, timeout=30)
    assert "Seed of app 730 coalesced into one re-check at" in worker.log()
    status = json.loads(await pipeline.cli("status", "--json", "--worker-url", ""))
    assert status["apps"]["rechecks"] == 1, status["apps"]
    assert status["apps"]["next_recheck_at"] is not None
    assert await price_of(pipeline) == 1999  # not yet: the window has not ended

    async def new_price() -> bool:
        return await price_of(pipeline) == 999

    await wait_for("the new price", new_price, timeout=120)
    requests = appdetails_requests(steam)
    # One request for the three seeds, at the end of the window: 60 s after the first seed was
    # taken (not after the first request, which a busy machine may send seconds later).
    assert len(requests) == 2, [r.time - seeded for r in requests]
    assert requests[1].time - seeded >= 60.0

    # Its change row comes from another sink (price_changes), which may commit a moment after.
    async def change_row() -> bool:
        return bool(await pipeline.query("SELECT 1 FROM price_changes WHERE app_id = %s", (APP,)))

    await wait_for("the change row", change_row, timeout=30)
    changes = await pipeline.query("SELECT kind FROM price_changes WHERE app_id = %s", (APP,))
    assert changes == [("discount_started",)]

    async def no_recheck_left() -> bool:
        status = json.loads(await pipeline.cli("status", "--json", "--worker-url", ""))
        return status["apps"]["rechecks"] == 0

    await wait_for("no pending re-check", no_recheck_left, timeout=30)
    # Nothing more: a seed is a request, not a subscription.
    await wait_until_right("the worker to settle", Quiet(pipeline, [worker]), timeout=60)
    assert len(appdetails_requests(steam)) == 2
