"""Discovery in a real worker: seed --all, change-driven re-pricing, the sweep as safety net."""

from __future__ import annotations

import json

import pytest

from tests.support.checks import appdetails_requests, metric_or_zero
from tests.support.fakes import FakeSteam
from tests.support.infra import wait_for
from tests.support.processes import Pipeline


def asked_for(steam: FakeSteam, app_id: int) -> int:
    """How many store requests named ``app_id``."""
    return sum(str(app_id) in r.query["appids"].split(",") for r in appdetails_requests(steam))  # type: ignore[attr-defined]


async def price_of(pipeline: Pipeline, app_id: int) -> tuple[object, ...] | None:
    rows = await pipeline.query(
        "SELECT final_price, discount_percent FROM price_current WHERE app_id = %s AND cc = 'us'",
        (app_id,),
    )
    return rows[0] if rows else None


async def test_seed_all_discovers_the_catalog_and_the_worker_prices_it(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    for app_id in range(100, 400):
        steam.set_price(app_id, "us", 999, 999, 0)
        if app_id >= 350:
            steam.set_type(app_id, "dlc")
    steam.set_type(7000, "software")
    pipeline.env.update(STEAM_API_KEY="testkey", STEAM_APP_TYPES="game,dlc")
    worker = pipeline.worker(STEAM_BATCH_WAIT_SECONDS="2")
    await worker.start()
    out = await pipeline.cli("seed", "--all")
    assert "Sent 300 app ids" in out  # games and DLC, not the software

    async def all_priced() -> int:
        rows = await pipeline.query("SELECT COUNT(*) FROM price_current WHERE status='priced'")
        n = int(rows[0][0]) if rows else 0
        return n if n == 300 else 0

    await wait_for("300 discovered apps priced", all_priced, timeout=40)
    assert sorted(r.n_appids for r in appdetails_requests(steam)) == [100, 100, 100]  # type: ignore[attr-defined]
    applist = [r for r in steam.requests if "GetAppList" in r.path]
    assert [r.query["include_dlc"] for r in applist] == ["true"]
    assert all("testkey" not in line for line in out.splitlines())


async def test_seed_all_without_a_valid_key_says_so(pipeline: Pipeline) -> None:
    with pytest.raises(AssertionError) as missing:
        await pipeline.cli("seed", "--all")
    assert "needs STEAM_API_KEY" in str(missing.value)
    pipeline.env["STEAM_API_KEY"] = "not-the-key"
    with pytest.raises(AssertionError) as wrong:
        await pipeline.cli("seed", "--all")
    assert "STEAM_API_KEY" in str(wrong.value) and "not-the-key" not in str(wrong.value)


async def test_a_change_announced_by_the_app_list_is_repriced_ahead_of_the_sweep(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    for app_id in (10, 20, 30):
        steam.set_price(app_id, "us", 999, 999, 0)
    worker = pipeline.worker(
        STEAM_API_KEY="testkey",
        DISCOVERY_INTERVAL_SECONDS="1",
        RECRAWL_INTERVAL_SECONDS="3600",  # the sweep will not come back during this test
    )
    await worker.start()
    await pipeline.cli("seed", "10", "20", "30")

    async def priced() -> int:
        rows = await pipeline.query("SELECT COUNT(*) FROM price_current")
        return 3 if rows and rows[0][0] == 3 else 0

    await wait_for("the three apps priced", priced)

    async def polled_twice() -> str:
        text = await worker.metrics()
        return (
            text
            if metric_or_zero(
                text, "steam_games_processed_total", task="discovery", status="listed"
            )
            >= 6
            else ""
        )

    # The poller has seen each app's change number at least twice (none moved: no re-price).
    await wait_for("two app-list polls", polled_twice)
    assert [asked_for(steam, a) for a in (10, 20, 30)] == [1, 1, 1]

    before = steam.app_meta(20)
    steam.set_price(20, "us", 999, 499, 50)  # a sale: the fake moves price_change_number
    after = steam.app_meta(20)
    assert before is not None and after is not None and after[1] > before[1]

    async def on_sale() -> tuple[object, ...] | None:
        row = await price_of(pipeline, 20)
        return row if row == (499, 50) else None

    await wait_for("app 20 re-priced from the change feed", on_sale, timeout=20)
    assert [asked_for(steam, a) for a in (10, 20, 30)] == [1, 2, 1]

    async def change_row() -> list[tuple[object, ...]]:
        return await pipeline.query("SELECT app_id, kind FROM price_changes")

    assert await wait_for("the sale recorded", change_row) == [(20, "discount_started")]


async def test_the_sweep_catches_what_the_app_list_never_announced(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    for app_id in (40, 50):
        steam.set_price(app_id, "us", 1999, 1999, 0)
    worker = pipeline.worker(RECRAWL_INTERVAL_SECONDS="4", DISCOVERY_INTERVAL_SECONDS="0")
    await worker.start()
    await pipeline.cli("seed", "40", "50")

    async def priced() -> tuple[object, ...] | None:
        return await price_of(pipeline, 40)

    await wait_for("app 40 priced", priced)
    # Served verbatim, so price_change_number does not move: only the sweep can see it.
    meta = steam.app_meta(40)
    steam.set_raw_entry(
        40,
        "us",
        json.dumps(
            {
                "success": True,
                "data": {
                    "price_overview": {
                        "currency": "USD",
                        "initial": 1999,
                        "final": 999,
                        "discount_percent": 50,
                        "initial_formatted": "$19.99",
                        "final_formatted": "$9.99",
                    }
                },
            }
        ),
    )
    assert steam.app_meta(40) == meta

    async def on_sale() -> tuple[object, ...] | None:
        row = await price_of(pipeline, 40)
        return row if row == (999, 50) else None

    await wait_for("the sweep to re-price app 40", on_sale, timeout=20)

    # Every tracked app is re-priced by the sweep, not just the changed one (perhaps in a
    # request of its own a moment later: the two seeds are of different partitions).
    async def swept_50() -> bool:
        return asked_for(steam, 50) >= 2

    await wait_for("the sweep to re-price app 50", swept_50, timeout=20)
    text = await worker.metrics()
    assert metric_or_zero(text, "steam_queue_size", queue="tracked") == 2
