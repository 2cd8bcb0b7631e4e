"""The GetItems client (discount end dates) against the fake Web API.

Batches as large as the URL allows, a pace and pauses of its own (a GetItems storm never holds
the store's pricing), retries, the learned URL limit after a 400, and every outcome counted.
Limits are scaled down to fractions of a second; timings are only lower bounds.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from steamprice import enddates, store_client
from steamprice.enddates import Offer
from steamprice.store_client import StoreClient
from tests.support.fakes import FakeSteam
from tests.support.store import client_settings, requests_counted, sample, started, until

PATH = "/IStoreBrowseService/GetItems/v1/"
# Seven-digit ids like today's newest apps: the longest URLs.
DISCOUNTED = list(range(3_000_000, 3_000_600))
# Five days from now (an end over a year away is not believed).
END = int(time.time()) // 3600 * 3600 + 5 * 86_400


@pytest.fixture
async def fake() -> AsyncIterator[FakeSteam]:
    async with FakeSteam(
        rate_limit=None, getitems_rate_limit=None, timeout_delay=2.0, default_discount_end=END
    ) as steam:
        for app_id in DISCOUNTED:
            steam.set_price(app_id, "us", 1999, 499, 75)
        yield steam


def offers(app_ids: list[int], initial: int = 1999, final: int = 499) -> list[Offer]:
    return [Offer(a, initial, final) for a in app_ids]


def item_requests(fake: FakeSteam) -> list[Any]:
    return [r for r in fake.requests if r.path == PATH]


def outcomes(client: StoreClient) -> dict[str, float]:
    counted = {
        outcome: sample(client, "steam_games_processed_total", task="enddate", status=outcome)
        for outcome in enddates.OUTCOMES
    }
    return {k: v for k, v in counted.items() if v}


async def test_end_dates_in_batches_as_large_as_the_url_allows(
    fake: FakeSteam, client: StoreClient
) -> None:
    results = await client.discount_ends(offers(DISCOUNTED), "us")
    assert {r.outcome for r in results} == {enddates.KNOWN}
    assert {r.ends_at for r in results} == {datetime.fromtimestamp(END, UTC)}
    assert sorted(r.app_id for r in results) == DISCOUNTED
    sent = item_requests(fake)
    # 600 apps in three requests: Valve's 250 fit under the URL limit.
    assert [r.n_appids for r in sent] == [250, 250, 100]
    assert all(r.status == 200 for r in sent)
    assert sample(client, "steam_api_requests_total", endpoint="getitems", status="200") == 3
    assert sample(client, "steam_batch_size_count", task="getitems") == 3
    assert sample(client, "steam_last_success_timestamp_seconds", endpoint="getitems") > 0
    assert outcomes(client) == {"known": 600}


async def test_a_lower_url_limit_halves_the_batch_and_is_remembered_for_a_while(
    fake: FakeSteam, client: StoreClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_client, "ITEMS_URL_PROBE_SECONDS", 0.5)
    fake.getitems_max_url = 4_000
    results = await client.discount_ends(offers(DISCOUNTED[:250]), "us")
    assert {r.outcome for r in results} == {enddates.KNOWN} and len(results) == 250
    assert [(r.n_appids, r.status) for r in item_requests(fake)] == [
        (250, 400),
        (125, 200),
        (125, 200),
    ]
    assert sample(client, "steam_batch_fallbacks_total", reason="getitems_split") == 1
    assert client.items_url_limit < 8_000
    fake.reset_stats()
    await client.discount_ends(offers(DISCOUNTED[250:500]), "us")
    # Packed under the learned limit: no second refusal.
    assert {r.status for r in item_requests(fake)} == {200}
    assert sum(r.n_appids for r in item_requests(fake)) == 250
    # Later the full length is tried again.
    fake.getitems_max_url = 8_000
    fake.reset_stats()
    await asyncio.sleep(0.5)
    await client.discount_ends(offers(DISCOUNTED[:250]), "us")
    assert [(r.n_appids, r.status) for r in item_requests(fake)] == [(250, 200)]


async def test_a_400_that_is_not_the_url_gives_up_after_a_few_halvings(
    fake: FakeSteam, client: StoreClient
) -> None:
    fake.fail_all("400null", "getitems")  # refused whatever the length
    results = await client.discount_ends(offers(DISCOUNTED[:250]), "us")
    assert {r.outcome for r in results} == {enddates.REQUEST_FAILED}
    # Halved down to URLs under MIN_URL_CHARS, never one request per app.
    assert len(item_requests(fake)) < 40
    assert outcomes(client) == {"request_failed": 250}


@pytest.mark.parametrize("kind", ["429", "eresult84"])
async def test_a_rate_limit_pauses_getitems_only_with_growing_backoff(
    fake: FakeSteam, client: StoreClient, kind: str
) -> None:
    fake.fail_next(2, kind, "getitems")
    results = await client.discount_ends(offers(DISCOUNTED[:10]), "us")
    assert {r.outcome for r in results} == {enddates.KNOWN}
    sent = item_requests(fake)
    assert [r.fault for r in sent] == [kind, kind, None]
    gaps = [b.time - a.time for a, b in itertools.pairwise(sent)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6  # backoff 0.3 s, doubled on the repeat
    assert (
        sample(client, "steam_rate_limit_pauses_total", endpoint="getitems", reason="rate_limited")
        == 2
    )
    assert sample(client, "steam_rate_limit_pause_seconds_total", endpoint="getitems") >= 0.9
    assert client.pacer.paused_for == 0  # the store's pacer


async def test_a_getitems_storm_never_holds_up_pricing(
    fake: FakeSteam, client: StoreClient
) -> None:
    fake.fail_all("429", "getitems")
    asking = asyncio.ensure_future(client.discount_ends(offers(DISCOUNTED[:10]), "us"))
    await until(lambda: len(item_requests(fake)) >= 2)
    # While GetItems waits out its pauses, appdetails prices at its own pace.
    for batch in (DISCOUNTED[:100], DISCOUNTED[100:200], DISCOUNTED[200:300]):
        priced = await asyncio.wait_for(client.fetch_batch(batch, "us"), timeout=2.0)
        assert sorted(priced.entries) == batch
    assert not asking.done()
    assert sample(client, "steam_store_banned") == 0
    fake.fail_all(None, "getitems")
    results = await asyncio.wait_for(asking, timeout=10.0)
    # The storm delayed the end dates; it did not lose them.
    assert {r.outcome for r in results} == {enddates.KNOWN}


async def test_a_403_pauses_getitems_without_the_store_ban_alert(
    fake: FakeSteam, client: StoreClient
) -> None:
    fake.fail_next(1, "403", "getitems")
    results = await client.discount_ends(offers(DISCOUNTED[:5]), "us")
    assert {r.outcome for r in results} == {enddates.KNOWN}
    sent = item_requests(fake)
    assert sent[1].time - sent[0].time >= 0.5  # STEAM_BAN_PAUSE_SECONDS
    assert sample(client, "steam_store_banned") == 0
    assert (
        sample(client, "steam_rate_limit_pauses_total", endpoint="getitems", reason="banned") == 1
    )


@pytest.mark.parametrize("kind", ["500", "503", "truncated", "html", "timeout"])
async def test_transient_failures_are_retried(
    fake: FakeSteam, client: StoreClient, kind: str
) -> None:
    fake.fail_next(2, kind, "getitems")
    results = await client.discount_ends(offers(DISCOUNTED[:5]), "us")
    assert {r.outcome for r in results} == {enddates.KNOWN}
    # Counted by the client: a timed-out request reaches the fake's log only later.
    sent = requests_counted(client, "getitems", {"200", kind, "timeout"})
    assert sent == 3  # two failures, then the answer


async def test_an_outage_ends_in_request_failed_not_an_exception(
    fake: FakeSteam, client: StoreClient
) -> None:
    fake.fail_all("503", "getitems")
    results = await client.discount_ends(offers(DISCOUNTED[:300]), "us")
    assert {r.outcome for r in results} == {enddates.REQUEST_FAILED}
    assert all("HTTP 503" in r.detail for r in results)
    # Two batches, each given up after the attempt limit.
    assert len(item_requests(fake)) == 2 * store_client.MAX_ATTEMPTS
    assert outcomes(client) == {"request_failed": 300}


async def test_odd_items_get_their_documented_outcome(fake: FakeSteam, client: StoreClient) -> None:
    a = DISCOUNTED
    fake.set_no_price(a[0], free=True)  # free
    fake.remove(a[1])  # unknown: success 15
    fake.set_no_price(a[2], "us")  # sold elsewhere only: not sold here
    cheaper = fake.store_item(a[3])
    cheaper["best_purchase_option"]["packageid"] = 1
    cheaper["best_purchase_option"]["final_price_in_cents"] = "299"
    fake.set_store_item(a[3], "us", cheaper)  # another package
    stacked = fake.store_item(a[4])
    stacked["best_purchase_option"]["active_discounts"] = [
        {"discount_amount": "1000", "discount_end_date": END},
        {"discount_amount": "500", "discount_end_date": END + 86_400},
    ]
    fake.set_store_item(a[4], "us", stacked)  # several discounts, none the whole cut
    fake.set_store_item(a[5], "us", {"item_type": 0, "id": a[5], "success": 1})  # hidden
    fake.set_store_item(a[6], "us", '"a string"')  # junk item
    fake.set_price(a[7], "us", 1999, 1999, 0)  # the sale ended since appdetails answered
    results = {r.app_id: r.outcome for r in await client.discount_ends(offers(a[:9]), "us")}
    assert results == {
        a[0]: enddates.FREE,
        a[1]: enddates.NOT_FOUND,
        a[2]: enddates.REGION_RESTRICTED,
        a[3]: enddates.OTHER_OFFER,
        a[4]: enddates.AMBIGUOUS,
        a[5]: enddates.HIDDEN,
        a[6]: enddates.MALFORMED,
        a[7]: enddates.NOT_DISCOUNTED,
        a[8]: enddates.KNOWN,
    }
    assert len(item_requests(fake)) == 1
    assert outcomes(client) == {
        "free": 1,
        "not_found": 1,
        "region_restricted": 1,
        "other_offer": 1,
        "ambiguous": 1,
        "hidden": 1,
        "malformed": 1,
        "not_discounted": 1,
        "known": 1,
    }


async def test_unknown_ids_left_out_are_not_found(fake: FakeSteam, client: StoreClient) -> None:
    fake.getitems_omit_unknown = True
    fake.remove(DISCOUNTED[0])
    results = await client.discount_ends(offers(DISCOUNTED[:3]), "us")
    assert [r.outcome for r in results] == [enddates.NOT_FOUND, enddates.KNOWN, enddates.KNOWN]


async def test_the_region_decides_the_prices_compared(fake: FakeSteam, client: StoreClient) -> None:
    app = DISCOUNTED[0]
    fake.set_price(app, "de", 1799, 899, 50)
    fake.set_discount_end(app, END + 3_600, cc="de")
    [de] = await client.discount_ends([Offer(app, 1799, 899)], "de")
    [us_prices_in_de] = await client.discount_ends([Offer(app, 1999, 499)], "de")
    assert de.outcome == enddates.KNOWN and de.ends_at == datetime.fromtimestamp(END + 3_600, UTC)
    assert us_prices_in_de.outcome == enddates.OTHER_OFFER


async def test_getitems_keeps_its_own_pace(fake: FakeSteam) -> None:
    client = await started(client_settings(fake.url, steam_getitems_max_requests_per_minute=300.0))
    try:
        await asyncio.gather(
            *(client.get_items([a], "us") for a in DISCOUNTED[:4]),
            client.fetch_batch(DISCOUNTED[:100], "us"),
        )
    finally:
        await client.stop()
    times = [r.time for r in item_requests(fake)]
    assert len(times) == 4
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.2 * 0.5


async def test_switched_off_sends_nothing(fake: FakeSteam) -> None:
    client = await started(client_settings(fake.url, steam_getitems_max_requests_per_minute=0.0))
    try:
        results = await client.discount_ends(offers(DISCOUNTED[:3]), "us")
    finally:
        await client.stop()
    assert {r.outcome for r in results} == {enddates.REQUEST_FAILED}
    assert item_requests(fake) == []
