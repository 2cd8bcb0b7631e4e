"""The whole pipeline on the real broker and database: seed, price, change, notify."""

from __future__ import annotations

import json
from datetime import datetime

from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.infra import wait_for
from tests.support.processes import Pipeline

CURRENT = (
    "SELECT app_id, cc, status, currency, initial_price, final_price, discount_percent"
    " FROM price_current ORDER BY app_id, cc"
)
CHANGES = (
    "SELECT app_id, cc, kind, currency, old_initial, old_final, old_discount, new_initial,"
    " new_final, new_discount FROM price_changes ORDER BY app_id, cc"
)


async def test_seed_price_change_and_notify(
    pipeline: Pipeline, steam: FakeSteam, discord: FakeDiscord
) -> None:
    steam.set_price(10, "us", 999, 999, 0)
    steam.set_price(10, "gb", 719, 719, 0)
    steam.set_price(20, "us", 499, 499, 0)
    steam.set_price(20, "gb", 399, 399, 0)
    steam.set_no_price(570)  # free: data []
    # 999999 is unknown to the fake: success:false
    worker = pipeline.worker(STEAM_COUNTRIES="us,gb", SEED_DEDUPE_SECONDS="0")
    await worker.start()

    out = await pipeline.cli("seed", "10", "20", "570", "999999")
    assert "Sent 4 app ids" in out

    async def all_priced() -> list[tuple[object, ...]]:
        rows = await pipeline.query(CURRENT)
        return rows if len(rows) == 8 else []

    rows = await wait_for("8 price_current rows", all_priced)
    assert rows == [
        (10, "gb", "priced", "GBP", 719, 719, 0),
        (10, "us", "priced", "USD", 999, 999, 0),
        (20, "gb", "priced", "GBP", 399, 399, 0),
        (20, "us", "priced", "USD", 499, 499, 0),
        (570, "gb", "no_price", None, None, None, None),
        (570, "us", "no_price", None, None, None, None),
        (999999, "gb", "unknown", None, None, None, None),
        (999999, "us", "unknown", None, None, None, None),
    ]
    # Batched: one request per region for the four apps, with exactly the price filter.
    price_requests = [r for r in steam.requests if r.path == "/api/appdetails"]
    assert sorted(r.query["cc"] for r in price_requests) == ["gb", "us"]
    assert all(r.query["filters"] == "price_overview" and r.n_appids == 4 for r in price_requests)
    # First observations are not changes.
    assert await pipeline.query("SELECT COUNT(*) FROM price_changes") == [(0,)]

    steam.set_price(10, "us", 999, 499, 50)  # a sale starts in the US
    steam.set_price(20, "gb", 499, 499, 0)  # the list price rises in the UK
    out = await pipeline.cli("seed", "10", "20")
    assert "Sent 2 app ids" in out

    async def two_changes() -> list[tuple[object, ...]]:
        rows = await pipeline.query(CHANGES)
        return rows if len(rows) >= 2 else []

    changes = await wait_for("2 price_changes rows", two_changes)
    assert changes == [
        (10, "us", "discount_started", "USD", 999, 999, 0, 999, 499, 50),
        (20, "gb", "list_price_increased", "GBP", 399, 399, 0, 499, 499, 0),
    ]
    # price_current is written by its own sink agent, which may commit just after the change sink.
    new_prices = {
        (10, "us", "priced", "USD", 999, 499, 50),
        (20, "gb", "priced", "GBP", 499, 499, 0),
    }

    async def current_updated() -> bool:
        return new_prices <= set(await pipeline.query(CURRENT))

    await wait_for("price_current to hold the new prices", current_updated)

    async def two_embeds() -> list[dict[str, object]]:
        embeds = [e for m in discord.messages for e in m.payload["embeds"]]
        return embeds if len(embeds) >= 2 else []

    embeds = await wait_for("2 Discord embeds", two_embeds)
    # Both changes may share one message (up to 10 embeds each); find the one carrying app 10.
    [first] = [
        m for m in discord.messages if any(e["url"].endswith("/10/") for e in m.payload["embeds"])
    ][:1]
    assert first.api_version == 10 and first.wait
    assert first.payload["allowed_mentions"] == {"parse": []}
    by_url = {e["url"]: e for e in embeds}
    assert len(embeds) == 2 and len(by_url) == 2
    e10 = by_url["https://store.steampowered.com/app/10/"]
    observed = e10.pop("timestamp")
    assert datetime.fromisoformat(observed).tzinfo is not None
    assert e10 == {
        "title": "App 10",
        "url": "https://store.steampowered.com/app/10/",
        "color": 0xF1C40F,  # a new historical low
        "thumbnail": {
            "url": "https://shared.akamai.steamstatic.com/store_item_assets/steam/apps/10/header.jpg"
        },
        "fields": [
            {
                "name": "US · Sale started",
                # When the sale ends (GetItems, asked right after the price; the alert waits
                # up to DISCORD_END_DATE_WAIT_SECONDS for it), in each reader's time zone.
                "value": "**$9.99** → ~~$9.99~~ **$4.99** (-50%)"
                f"\nSale ends <t:{steam.discount_end(10)}:R>\n🏆 New historical low",
                "inline": True,
            }
        ],
        "footer": {
            "text": f"steamprice · observed {datetime.fromisoformat(observed):%Y-%m-%d %H:%M} UTC"
        },
    }
    e20 = by_url["https://store.steampowered.com/app/20/"]
    assert e20["fields"] == [
        {"name": "GB · Price increased", "value": "**£3.99** → **£4.99**", "inline": True}
    ]
    assert e20["color"] == 0xE67E22

    # The ledger holds both (marked sent just after Discord's answer); nothing was sent inside a
    # retry window.
    async def both_sent() -> list[tuple[object, ...]]:
        rows = await pipeline.query(
            "SELECT status, COUNT(*) FROM discord_deliveries GROUP BY status"
        )
        return rows if rows == [("sent", 2)] else []

    await wait_for("2 sent rows in discord_deliveries", both_sent)
    assert discord.requests_in_retry_window == 0

    # Garbage on the seed topic lands on app-ids-failed with a reason; the worker keeps going.
    await pipeline.send_raw("app-ids", [b"hello", b"-5", b'{"app_id": 7.5}'])

    async def failed() -> list[dict[str, object]]:
        msgs = [json.loads(v) for _, v in await pipeline.read_topic("app-ids-failed") if v]
        return msgs if len(msgs) >= 3 else []

    rejected = await wait_for("3 messages on app-ids-failed", failed)
    assert sorted(m["raw"] for m in rejected) == sorted(['{"app_id": 7.5}', "-5", "hello"])
    assert all(m["reason"] for m in rejected)
    health = await worker.health()
    assert health is not None and health["consuming"] is True
    metrics = await worker.metrics()
    assert 'steam_bad_input_total{reason="invalid",source="seed"} 3.0' in metrics
    assert 'steam_pipeline_status{pipeline="worker"} 1.0' in metrics
    assert "tok-integration-secret" not in worker.log() + metrics
