"""Discount end dates on the real stack: GetItems (the fake) -> MySQL, pages and Discord embeds.

Production defaults throughout (GetItems' pace, retry waits, the alert's wait for its end date).
Re-seeding an app is what an operator does to re-check it now, and what asks its end date again
within a sweep. The extended-sale test runs twice: in the everyday tier with the seed dedupe
window off (``SEED_DEDUPE_SECONDS=0``: each re-seed is priced at once), and in the slow tier with
the production window (60 s: each re-seed is coalesced into a re-check at the window's end, which
must ask the end date again; three windows, about 3 minutes). The other tests switch the window
off because their re-seeds only bring a new price, whose coalescing is
tests/integration/test_reseed.py's subject, and would each add a minute of waiting.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from tests.support.checks import metric_or_zero
from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.infra import wait_for
from tests.support.processes import Pipeline

GETITEMS = "/IStoreBrowseService/GetItems/v1/"
# Whole hours from now (DATETIME columns hold seconds; Discord markup takes unix seconds).
NOW = int(time.time()) // 3600 * 3600
END_1 = NOW + 3 * 86_400
END_2 = NOW + 5 * 86_400
END_3 = NOW + 9 * 86_400
# A re-seed inside the production dedupe window (60 s) waits for its end, plus the pipeline.
WINDOW = 120.0


def naive(unix: int) -> datetime:
    """A unix time as the naive UTC datetime MySQL hands back."""
    return datetime.fromtimestamp(unix, UTC).replace(tzinfo=None)


def item_requests(steam: FakeSteam) -> list[object]:
    return [r for r in steam.requests if r.path == GETITEMS]


async def embeds_of(discord: FakeDiscord, app_id: int) -> list[dict[str, Any]]:
    url = f"https://store.steampowered.com/app/{app_id}/"
    return [e for m in discord.messages for e in m.payload["embeds"] if e["url"] == url]


async def ends(pipeline: Pipeline, table: str = "price_current") -> dict[int, datetime | None]:
    rows = await pipeline.query(f"SELECT app_id, discount_ends_at FROM {table}")
    return {int(a): e for a, e in rows}


async def test_discounts_get_their_end_dates_into_mysql_pages_and_embeds(
    pipeline: Pipeline, steam: FakeSteam, discord: FakeDiscord
) -> None:
    steam.set_price(10, "us", 999, 999, 0)  # full price at first
    steam.set_price(20, "us", 1999, 499, 75)  # on sale
    steam.set_discount_end(20, END_1)
    # Odd items, each with its documented outcome and no end date:
    steam.set_price(30, "us", 1999, 999, 50)  # GetItems' best option is another package
    other = steam.store_item(30)
    other["best_purchase_option"].update(packageid=1, final_price_in_cents="799")
    steam.set_store_item(30, "us", other)
    steam.set_price(40, "us", 1999, 999, 50)  # two partial discounts, neither the whole cut
    stacked = steam.store_item(40)
    stacked["best_purchase_option"]["active_discounts"] = [
        {"discount_amount": "600", "discount_end_date": END_1},
        {"discount_amount": "400", "discount_end_date": END_2},
    ]
    steam.set_store_item(40, "us", stacked)
    steam.set_price(50, "us", 1999, 999, 50)  # GetItems does not know it: success 15
    steam.set_store_item(
        50, "us", {"item_type": 0, "id": 50, "success": 15, "visible": False, "appid": 0}
    )
    steam.set_no_price(570, free=True)  # free: no discount, never asked
    worker = pipeline.worker(SEED_DEDUPE_SECONDS="0")
    await worker.start()
    await pipeline.cli("seed", "10", "20", "30", "40", "50", "570")

    async def answered() -> list[tuple[object, ...]]:
        rows = await pipeline.query(
            "SELECT app_id, outcome, ends_at, pending FROM discount_ends ORDER BY app_id"
        )
        return rows if len(rows) == 4 and all(r[3] == 0 for r in rows) else []

    assert await wait_for("4 discounts answered", answered) == [
        (20, "known", naive(END_1), 0),
        (30, "other_offer", None, 0),
        (40, "ambiguous", None, 0),
        (50, "not_found", None, 0),
    ]

    async def current_end() -> dict[int, datetime | None]:
        found = await ends(pipeline)
        return found if found.get(20) is not None else {}

    assert await wait_for("the end date in price_current", current_end) == {
        10: None,
        20: naive(END_1),
        30: None,
        40: None,
        50: None,
        570: None,
    }
    # One request for the four discounted apps (full price and free ones are not asked).
    [first] = item_requests(steam)
    assert first.n_appids == 4 and json.loads(first.query["input_json"])["context"] == {
        "language": "english",
        "country_code": "US",
    }

    # A sale starts: the change, its row and its alert all carry the end.
    steam.set_price(10, "us", 999, 249, 75)
    steam.set_discount_end(10, END_2)
    await pipeline.cli("seed", "10")

    async def change_with_end() -> list[tuple[object, ...]]:
        rows = await pipeline.query(
            "SELECT app_id, kind, new_final, discount_ends_at FROM price_changes"
        )
        return rows if rows and rows[0][3] is not None else []

    assert await wait_for("the change row's end date", change_with_end) == [
        (10, "discount_started", 249, naive(END_2))
    ]
    [embed] = await wait_for("the alert of app 10", lambda: embeds_of(discord, 10))
    [field] = embed["fields"]
    assert field["value"] == (
        f"**$9.99** → ~~$9.99~~ **$2.49** (-75%)\nSale ends <t:{END_2}:R>\n🏆 New historical low"
    )
    assert (await ends(pipeline))[10] == naive(END_2)
    assert len(item_requests(steam)) == 2  # only app 10 asked again

    # The pages show it.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{worker.url}/api/apps/20") as resp:
            page = await resp.json()
    [region] = page["regions"]
    assert region["discount_ends_at"].startswith(naive(END_1).isoformat())

    text = await worker.metrics()
    for outcome, n in {"known": 2, "other_offer": 1, "ambiguous": 1, "not_found": 1}.items():
        assert (
            metric_or_zero(text, "steam_games_processed_total", task="enddate", status=outcome) == n
        ), outcome
    assert metric_or_zero(text, "steam_api_requests_total", endpoint="getitems", status="200") == 2

    status = json.loads(await pipeline.cli("status", "--json", "--worker-url", worker.url))
    [us] = status["discounts"]
    assert us == {
        "cc": "us",
        "discounted": 5,
        "known_end": 2,
        "unknown_end": 3,
        "asking": 0,
        "asking_after_failure": 0,
    }


@pytest.mark.parametrize(
    "window",
    [
        pytest.param("0", id="reseed-at-once"),
        pytest.param(None, id="production-window", marks=pytest.mark.slow),
    ],
)
async def test_an_extended_sale_updates_the_date_without_a_change_event(
    pipeline: Pipeline, steam: FakeSteam, discord: FakeDiscord, window: str | None
) -> None:
    steam.set_price(20, "us", 1999, 1999, 0)
    # With the production window (None), each re-seed below is coalesced into a re-check.
    worker = pipeline.worker(**({"SEED_DEDUPE_SECONDS": window} if window else {}))
    await worker.start()
    await pipeline.cli("seed", "20")
    await wait_for("the first price", lambda: pipeline.query("SELECT 1 FROM price_current"))
    steam.set_price(20, "us", 1999, 999, 50)
    steam.set_discount_end(20, END_1)
    await pipeline.cli("seed", "20")  # a re-check at the end of the window (60 s)

    async def change_end(want: int) -> bool:
        return await ends(pipeline, "price_changes") == {20: naive(want)} and (
            await ends(pipeline) == {20: naive(want)}
        )

    await wait_for("the sale's end", lambda: change_end(END_1), timeout=WINDOW)
    await wait_for("its alert", lambda: embeds_of(discord, 20))
    asked = len(item_requests(steam))

    steam.set_discount_end(20, END_3)  # the publisher extends the sale
    await pipeline.cli("seed", "20")  # coalesced again: the re-check must ask GetItems again
    await wait_for("the extended end in both rows", lambda: change_end(END_3), timeout=WINDOW)
    coalesced = metric_or_zero(
        await worker.metrics(),
        "steam_games_processed_total",
        task="schedule",
        status="recheck_coalesced",
    )
    assert coalesced == (0 if window else 2)
    assert len(item_requests(steam)) == asked + 1
    # An update, not a change: no event, no second row, no second alert.
    assert await pipeline.query("SELECT COUNT(*) FROM price_changes") == [(1,)]
    events = [v for _, v in await pipeline.read_topic("price-changes") if v]
    assert len(events) == 1
    assert len(await embeds_of(discord, 20)) == 1

    # The sale ends: the ordinary change, and no end date any more.
    steam.set_price(20, "us", 1999, 1999, 0)
    await pipeline.cli("seed", "20")

    async def ended() -> list[tuple[object, ...]]:
        rows = await pipeline.query("SELECT kind, discount_ends_at FROM price_changes")
        return rows if len(rows) == 2 else []

    assert sorted(await wait_for("the end of the sale", ended, timeout=WINDOW), key=str) == sorted(
        [("discount_started", naive(END_3)), ("discount_ended", None)], key=str
    )

    async def no_end() -> bool:
        return await ends(pipeline) == {20: None}

    await wait_for("price_current without an end", no_end)


# Each waits out the production 30 s retry: the 429 storm runs in the slow tier.
@pytest.mark.parametrize("fault", ["503", pytest.param("429", marks=pytest.mark.slow)])
async def test_a_getitems_outage_or_storm_delays_end_dates_never_prices_or_alerts(
    pipeline: Pipeline, steam: FakeSteam, discord: FakeDiscord, fault: str
) -> None:
    steam.set_price(10, "us", 999, 999, 0)
    steam.set_discount_end(10, END_2)
    steam.fail_all(fault, "getitems")
    worker = pipeline.worker(SEED_DEDUPE_SECONDS="0")
    await worker.start()
    await pipeline.cli("seed", "10")
    await wait_for("the first price", lambda: pipeline.query("SELECT 1 FROM price_current"))

    steam.set_price(10, "us", 999, 249, 75)
    started = time.monotonic()
    await pipeline.cli("seed", "10")
    [embed] = await wait_for(
        "the alert, without waiting for GetItems", lambda: embeds_of(discord, 10)
    )
    alert_after = time.monotonic() - started
    assert "Sale ends" not in embed["fields"][0]["value"]
    assert await pipeline.query("SELECT kind, new_final, discount_ends_at FROM price_changes") == [
        ("discount_started", 249, None)
    ]
    assert (await pipeline.query("SELECT final_price FROM price_current")) == [(249,)]
    assert item_requests(steam), "GetItems was asked (and failed)"

    async def failing() -> list[tuple[object, ...]]:
        return await pipeline.query(
            "SELECT app_id FROM discount_ends WHERE pending = 1 AND attempts > 0"
        )

    await wait_for("the question kept after the failed try", failing)
    status = json.loads(await pipeline.cli("status", "--json", "--worker-url", worker.url))
    assert status["discounts"][0]["asking_after_failure"] == 1

    # GetItems answers again: the end date arrives by itself (the queued question is retried).
    steam.fail_all(None, "getitems")
    healed = time.monotonic()

    async def arrived() -> bool:
        return await ends(pipeline) == {10: naive(END_2)} and (
            await ends(pipeline, "price_changes") == {10: naive(END_2)}
        )

    await wait_for("the end date after the trouble", arrived, timeout=180)
    print(
        f"\n{fault}: alert {alert_after:.1f} s after the re-seed, during the trouble; end date"
        f" {time.monotonic() - healed:.1f} s after GetItems answered again"
    )
    text = await worker.metrics()
    reason = "rate_limited" if fault == "429" else None
    if reason:
        assert (
            metric_or_zero(
                text, "steam_rate_limit_pauses_total", endpoint="getitems", reason=reason
            )
            >= 1
        )
    for why in ("rate_limited", "banned"):
        assert (
            metric_or_zero(text, "steam_rate_limit_pauses_total", endpoint="appdetails", reason=why)
            == 0
        )
    assert len(await embeds_of(discord, 10)) == 1
