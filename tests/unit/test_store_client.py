"""The Steam client against the fake store: batching, pacing, pauses, retries, fallbacks.

Limits are scaled down to fractions of a second; timings are only checked as lower bounds
(a request never leaves early), never as speed targets.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from steamprice import store_client
from steamprice.steam import USER_AGENT, StoreError, app_list_params, parse_entry
from steamprice.store_client import StoreClient
from tests.support.fakes import FakeSteam
from tests.support.store import client_settings, requests_counted, sample, started, until

APPS = list(range(10, 18))


@pytest.fixture
async def fake() -> AsyncIterator[FakeSteam]:
    async with FakeSteam(rate_limit=None, penalty_seconds=0.3, timeout_delay=2.0) as steam:
        for app_id in APPS:
            steam.set_price(app_id, "us", 1000 + app_id, 1000 + app_id, 0)
        yield steam


def store_requests(fake: FakeSteam) -> list[Any]:
    return [r for r in fake.requests if r.path == "/api/appdetails"]


def gaps(fake: FakeSteam) -> list[float]:
    times = [r.time for r in store_requests(fake)]
    return [b - a for a, b in itertools.pairwise(times)]


async def test_one_batched_request_per_region_with_exactly_the_price_filter(
    fake: FakeSteam, client: StoreClient
) -> None:
    result = await client.fetch_batch(APPS, "us")
    assert sorted(result.entries) == APPS and not result.errors
    assert parse_entry(result.entries[12]).final == 1012
    [request] = store_requests(fake)
    assert request.query == {
        "appids": ",".join(map(str, APPS)),
        "filters": "price_overview",
        "cc": "us",
        "l": "english",
    }


async def test_no_cookies_and_a_stable_user_agent() -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        response = web.json_response({"10": {"success": False}})
        response.set_cookie("sessionid", "abc123")
        response.set_cookie("birthtime", "0")
        return response

    app = web.Application()
    app.router.add_get("/api/appdetails", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = await started(client_settings(f"http://127.0.0.1:{port}"))
    try:
        await client.fetch_batch([10], "us")
        await client.fetch_batch([10], "us")
    finally:
        await client.stop()
        await runner.cleanup()
    assert [h["User-Agent"] for h in seen] == [USER_AGENT, USER_AGENT]
    assert "steamprice" in USER_AGENT
    assert all("Cookie" not in h for h in seen)


async def test_requests_are_spread_evenly_even_from_concurrent_callers(fake: FakeSteam) -> None:
    client = await started(client_settings(fake.url, steam_max_requests_per_minute=300.0))
    released: list[float] = []
    acquire = client.pacer.acquire

    async def timed_acquire() -> None:
        await acquire()
        released.append(time.monotonic())

    client.pacer.acquire = timed_acquire  # type: ignore[method-assign]
    try:
        await asyncio.gather(*(client.fetch_batch([a], "us") for a in APPS[:5]))
        await asyncio.sleep(0.5)  # idle: the next requests must not burst to catch up
        await asyncio.gather(*(client.fetch_batch([a], "us") for a in APPS[:3]))
    finally:
        await client.stop()
    assert len(store_requests(fake)) == 8
    # Where the pacer releases requests, the interval is exact.
    assert min(b - a for a, b in itertools.pairwise(released)) >= 0.2
    # Arrival gaps at the server carry scheduling noise on a loaded machine; a burst would show
    # gaps near zero, so half the interval is a safe line between "paced" and "burst".
    assert min(gaps(fake)) >= 0.2 * 0.5


async def test_pacing_at_the_limit_never_draws_a_429() -> None:
    async with FakeSteam(rate_limit=(5, 1.0)) as steam:
        client = await started(client_settings(steam.url, steam_max_requests_per_minute=270.0))
        try:
            for app_id in range(1, 13):
                await client.fetch_batch([app_id], "us")
        finally:
            await client.stop()
        assert steam.count_429 == 0 and len(store_requests(steam)) == 12


async def test_a_429_pauses_every_request_with_growing_jittered_backoff_reset_by_success(
    fake: FakeSteam, client: StoreClient
) -> None:
    fake.fail_next(2, "429")
    # Two callers: the second must wait out the pause too.
    first, second = await asyncio.gather(
        client.fetch_batch(APPS[:4], "us"), client.fetch_batch(APPS[4:], "us")
    )
    assert sorted([*first.entries, *second.entries]) == APPS
    statuses = [r.status for r in store_requests(fake)]
    assert statuses == [429, 429, 200, 200]
    g = gaps(fake)
    assert g[0] >= 0.3 and g[1] >= 0.6  # backoff 0.3 s, doubled on the repeat
    assert fake.requests_during_penalty == 0

    fake.fail_next(1, "429")
    await client.fetch_batch(APPS[:1], "us")
    g = gaps(fake)
    assert 0.3 <= g[-1] < 0.6  # the streak was reset by the success in between
    assert (
        sample(
            client, "steam_rate_limit_pauses_total", endpoint="appdetails", reason="rate_limited"
        )
        == 3
    )
    assert fake.requests_during_penalty == 0


async def test_a_403_page_pauses_much_longer_and_raises_the_alert_metric(
    fake: FakeSteam, client: StoreClient
) -> None:
    fake.fail_next(1, "403")
    fetch = asyncio.ensure_future(client.fetch_batch(APPS, "us"))
    await until(lambda: sample(client, "steam_store_banned") == 1)
    assert len(store_requests(fake)) == 1  # held: nothing more during the pause
    result = await fetch
    assert sorted(result.entries) == APPS
    assert gaps(fake)[0] >= 0.5  # STEAM_BAN_PAUSE_SECONDS, not the 429 backoff
    assert sample(client, "steam_store_banned") == 0
    assert (
        sample(client, "steam_rate_limit_pauses_total", endpoint="appdetails", reason="banned") == 1
    )


async def test_an_overdriven_client_is_throttled_but_never_banned() -> None:
    # The fake bans after 3 throttled answers within its 1 s window; a client that kept
    # sending while throttled would be banned within a second.
    async with FakeSteam(
        rate_limit=(5, 1.0), ban_after_429s=3, penalty_seconds=0.5, ban_seconds=60
    ) as steam:
        client = await started(
            client_settings(
                steam.url, steam_max_requests_per_minute=600.0, steam_backoff_seconds=0.6
            )
        )
        try:
            for app_id in range(1, 16):
                result = await client.fetch_batch([app_id], "us")
                assert not result.errors
        finally:
            await client.stop()
        assert steam.count_429 >= 1
        assert steam.count_403 == 0 and not steam.is_banned()
        assert steam.requests_during_penalty == 0


@pytest.mark.parametrize("kind", ["500", "502", "503", "truncated", "html", "timeout"])
async def test_transient_failures_are_retried(
    fake: FakeSteam, client: StoreClient, kind: str
) -> None:
    fake.fail_next(2, kind)
    result = await client.fetch_batch(APPS, "us")
    assert sorted(result.entries) == APPS and not result.errors
    sent = requests_counted(client, "appdetails", {"200", kind, "timeout"})
    assert sent == 3  # two failures, then the answer


async def test_a_request_that_keeps_failing_is_given_up_after_the_attempt_limit(
    fake: FakeSteam, client: StoreClient
) -> None:
    fake.fail_next(store_client.MAX_ATTEMPTS, "502")
    result = await client.fetch_batch(APPS, "us")
    assert not result.entries and sorted(result.errors) == APPS
    assert "HTTP 502" in result.errors[10]
    assert len(store_requests(fake)) == store_client.MAX_ATTEMPTS


async def test_a_refused_batch_falls_back_to_single_requests_for_a_while(
    fake: FakeSteam, client: StoreClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_client, "SINGLES_PROBE_SECONDS", 0.5)
    fake.batching_enabled = False
    result = await client.fetch_batch(APPS[:3], "us")
    assert sorted(result.entries) == APPS[:3]
    assert [r.n_appids for r in store_requests(fake)] == [3, 1, 1, 1]
    assert sample(client, "steam_batch_fallbacks_total", reason="refused") == 1
    # While batching is known to be off, batches go out one app at a time without a probe.
    await client.fetch_batch(APPS[3:5], "us")
    assert [r.n_appids for r in store_requests(fake)][4:] == [1, 1]
    # After the probe period, batching is tried again.
    fake.batching_enabled = True
    await asyncio.sleep(0.5)
    await client.fetch_batch(APPS[5:], "us")
    assert [r.n_appids for r in store_requests(fake)][6:] == [3]


async def test_a_broken_entry_is_isolated_by_bisection(
    fake: FakeSteam, client: StoreClient
) -> None:
    # Invalid JSON for one app breaks the whole body, as a broken upstream would.
    fake.set_raw_entry(16, None, '{"success":true,"data":{"price_overview":')
    result = await client.fetch_batch(APPS, "us")
    assert list(result.errors) == [16] and "breaks the JSON" in result.errors[16]
    assert sorted(result.entries) == [a for a in APPS if a != 16]
    assert sample(client, "steam_batch_fallbacks_total", reason="isolate") == 1
    # Four attempts of the batch, then about two requests per halving: far fewer than one
    # request per app, let alone one per app per attempt.
    assert len(store_requests(fake)) <= store_client.MAX_ATTEMPTS + 3 * 3


async def test_bisection_stops_when_both_halves_fail(fake: FakeSteam, client: StoreClient) -> None:
    fake.set_raw_entry(10, None, "{broken")
    fake.set_raw_entry(17, None, "{broken")
    result = await client.fetch_batch(APPS, "us")
    assert not result.entries and sorted(result.errors) == APPS
    assert (
        len(store_requests(fake)) == store_client.MAX_ATTEMPTS + 2 * store_client.ISOLATE_ATTEMPTS
    )


async def test_odd_entries_come_back_untouched_for_the_parser(
    fake: FakeSteam, client: StoreClient
) -> None:
    fake.set_no_price(11)
    fake.set_raw_entry(12, None, '{"success":true,"data":{}}')
    fake.set_raw_entry(13, None, '{"success":true}')
    result = await client.fetch_batch([*APPS, 999999], "us")
    statuses = {a: parse_entry(e).status for a, e in result.entries.items()}
    assert statuses[11] == statuses[12] == statuses[13] == "no_price"
    assert statuses[999999] == "unknown" and statuses[10] == "priced"


async def test_app_list_pages_retry_server_errors_but_not_a_bad_key(
    fake: FakeSteam, client: StoreClient
) -> None:
    fake.fail_next(1, "503", endpoint="applist")
    page = await client.app_list_page(app_list_params("testkey"))
    assert [a.app_id for a in page.apps] == APPS and page.last_appid is None
    with pytest.raises(StoreError) as err:
        await client.app_list_page(app_list_params("wrong"))
    assert err.value.kind == "banned" and "STEAM_API_KEY" in str(err.value)
    applist = [r for r in fake.requests if "GetAppList" in r.path]
    assert [r.status for r in applist] == [503, 200, 403]
    # The store's pacer was never paused by the Web API's 403.
    assert client.pacer.paused_for == 0


async def test_steamspy_is_asked_at_most_once_a_second(
    fake: FakeSteam, client: StoreClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_client, "STEAMSPY_PAUSE_SECONDS", 0.2)
    fake.fail_next(1, "429", endpoint="steamspy")
    details = [await client.steamspy_details(a) for a in (10, 11, 12)]
    assert [d.name for d in details] == ["Fake App 10", "Fake App 11", "Fake App 12"]
    spy = [r for r in fake.requests if r.path == "/api.php"]
    assert [r.status for r in spy] == [429, 200, 200, 200]
    times = [r.time for r in spy]
    assert min(b - a for a, b in itertools.pairwise(times)) >= 1.0
    assert fake.steamspy_violations == []
