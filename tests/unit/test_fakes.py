"""Unit tests of the fake Steam/SteamSpy and Discord servers in ``tests/support/fakes``.

Each documented behaviour of ``/work/shared/docs/steam-api.md`` that the fakes promise is proven
here against a real socket. Limits are exercised with a controllable clock (``ManualClock``) so
that nothing sleeps; the few real-time checks poll with short intervals.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.fakes import FakeDiscord as LazyFakeDiscord
from tests.support.fakes import FakeSteam as LazyFakeSteam
from tests.support.fakes import ManualClock
from tests.support.fakes.discord import FakeDiscord
from tests.support.fakes.steam import FakeSteam, format_price


async def fetch(
    session: aiohttp.ClientSession, url: str, **params: Any
) -> tuple[int, str, dict[str, str]]:
    async with session.get(url, params={k: str(v) for k, v in params.items()}) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def post(
    session: aiohttp.ClientSession, url: str, payload: Any, *, raw: str | None = None
) -> tuple[int, str, dict[str, str]]:
    if raw is not None:
        kwargs: dict[str, Any] = {"data": raw, "headers": {"Content-Type": "application/json"}}
    else:
        kwargs = {"json": payload}
    async with session.post(url, **kwargs) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


def no_rate_headers(headers: dict[str, str]) -> bool:
    return not any(
        k.lower().startswith("x-ratelimit") or k.lower() == "retry-after" for k in headers
    )


# ---------------------------------------------------------------------------- Steam store


async def test_lazy_package_exports() -> None:
    assert LazyFakeSteam is FakeSteam
    assert LazyFakeDiscord is FakeDiscord


async def test_lifecycle_url_and_unknown_paths(session: aiohttp.ClientSession) -> None:
    fake = FakeSteam(rate_limit=None)
    url = await fake.start()
    assert url == fake.url and url.startswith("http://127.0.0.1:")
    # The removed v2 app list answers 404 and is recorded.
    status, _, _ = await fetch(session, f"{url}/ISteamApps/GetAppList/v2/")
    assert status == 404
    assert fake.requests[-1].status == 404
    await fake.stop()
    await fake.stop()  # idempotent


async def test_batch_shapes_exact_bytes(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        fake.set_price(10, "us", 1999, 999, 50)
        fake.set_price(20, "us", 499, 499, 0)
        fake.set_no_price(570, free=True)
        status, body, headers = await fetch(
            session,
            f"{fake.url}/api/appdetails",
            appids="999999999,10,570,20",
            cc="us",
            l="english",
            filters="price_overview",
        )
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert body == (
        '{"999999999":{"success":false},'
        '"10":{"success":true,"data":{"price_overview":{"currency":"USD","initial":1999,'
        '"final":999,"discount_percent":50,"initial_formatted":"$19.99",'
        '"final_formatted":"$9.99"}}},'
        '"570":{"success":true,"data":[]},'
        '"20":{"success":true,"data":{"price_overview":{"currency":"USD","initial":499,'
        '"final":499,"discount_percent":0,"initial_formatted":"","final_formatted":"$4.99"}}}}'
    )
    assert list(json.loads(body)) == ["999999999", "10", "570", "20"]
    assert fake.requests[-1].n_appids == 4


async def test_batch_needs_exactly_price_overview(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        fake.set_price(10, "us", 999, 999, 0)
        fake.set_price(20, "us", 499, 499, 0)
        api = f"{fake.url}/api/appdetails"
        assert (await fetch(session, api, appids="10,20", cc="us"))[:2] == (400, "null")
        bad_filter = await fetch(session, api, appids="10,20", filters="price_overview,basic")
        assert bad_filter[:2] == (400, "null")
        assert (await fetch(session, api, appids="10,20", filters="basic"))[:2] == (400, "null")
        ok = await fetch(session, api, appids="10,20", filters="price_overview")
        assert ok[0] == 200

        fake.batching_enabled = False
        off = await fetch(session, api, appids="10,20", filters="price_overview", cc="us")
        assert off[:2] == (400, "null")
        single = await fetch(session, api, appids="10", filters="price_overview", cc="us")
        assert single[0] == 200 and json.loads(single[1])["10"]["success"] is True


async def test_unfiltered_single_app_is_large_object(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        fake.set_name(1151640, "Horizon Zero Dawn™ Complete Edition")
        fake.set_price(1151640, "au", 7495, 2998, 60)
        fake.set_no_price(570, free=True)
        api = f"{fake.url}/api/appdetails"
        _, body, _ = await fetch(session, api, appids=1151640, cc="au")
        data = json.loads(body)["1151640"]["data"]
        assert data["name"] == "Horizon Zero Dawn™ Complete Edition"
        assert data["type"] == "game" and data["steam_appid"] == 1151640
        assert data["is_free"] is False and "header_image" in data
        assert data["price_overview"] == {
            "currency": "AUD",
            "initial": 7495,
            "final": 2998,
            "discount_percent": 60,
            "initial_formatted": "A$ 74.95",
            "final_formatted": "A$ 29.98",
        }
        assert "™" in body and '": ' not in body and '", "' not in body  # compact, raw UTF-8

        _, free_body, _ = await fetch(session, api, appids=570)
        free = json.loads(free_body)["570"]["data"]
        assert free["is_free"] is True and "price_overview" not in free
        # A filter that leaves nothing gives Steam's empty array.
        _, filtered, _ = await fetch(session, api, appids=570, filters="price_overview")
        assert filtered == '{"570":{"success":true,"data":[]}}'
        _, basic, _ = await fetch(session, api, appids=570, filters="basic")
        assert "price_overview" not in json.loads(basic)["570"]["data"]
        # Missing appids is a bad request.
        assert (await fetch(session, api))[:2] == (400, "null")


async def test_regions_and_currencies(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        fake.set_price(1680880, "jp", 968000, 968000, 0)
        fake.set_price(1680880, "us", 6999, 6999, 0)
        fake.set_price(1680880, "de", 1999, 999, 50)
        fake.set_price(1680880, "ar", 1999, 1999, 0)
        fake.set_price(1680880, "zz", 100, 100, 0)
        api = f"{fake.url}/api/appdetails"

        async def overview(**params: Any) -> dict[str, Any]:
            _, body, _ = await fetch(
                session, api, appids=1680880, filters="price_overview", **params
            )
            result: dict[str, Any] = json.loads(body)["1680880"]["data"]["price_overview"]
            return result

        jp = await overview(cc="jp")
        assert (jp["currency"], jp["final"], jp["final_formatted"]) == ("JPY", 968000, "¥ 9,680")
        assert (await overview())["currency"] == "USD"  # cc missing -> us
        de = await overview(cc="de")
        assert (de["initial_formatted"], de["final_formatted"]) == ("19,99€", "9,99€")
        assert (await overview(cc="ar"))["currency"] == "USD"
        assert (await overview(cc="zz"))["currency"] == "USD"
        # Not priced in gb: a known app, so data [] (not success:false).
        _, gb, _ = await fetch(session, api, appids=1680880, cc="gb", filters="price_overview")
        assert gb == '{"1680880":{"success":true,"data":[]}}'
    assert format_price(2099_00, "PHP") == "P2,099.00"
    assert format_price(2150000, "KRW") == "₩ 21,500"


async def test_raw_entries_do_not_spoil_the_batch(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        fake.set_price(10, "us", 999, 999, 0)
        fake.set_raw_entry(1, "us", '{"success":true}')
        fake.set_raw_entry(2, None, '{"success":true,"data":{}}')
        fake.set_raw_entry(3, "us", '{"success":true,"data":{"name":"x"}}')
        _, body, _ = await fetch(
            session, f"{fake.url}/api/appdetails", appids="1,2,3,10", filters="price_overview"
        )
        parsed = json.loads(body)
        assert parsed["1"] == {"success": True}
        assert parsed["2"] == {"success": True, "data": {}}
        assert parsed["3"]["data"] == {"name": "x"}
        assert parsed["10"]["data"]["price_overview"]["final"] == 999
        fake.remove(10)
        _, body, _ = await fetch(session, f"{fake.url}/api/appdetails", appids="10")
        assert body == '{"10":{"success":false}}'


async def test_rate_limit_429_null_without_headers(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeSteam(rate_limit=(3, 300.0), penalty_seconds=16.0, clock=clock) as fake:
        fake.set_price(10, "us", 999, 999, 0)
        api = f"{fake.url}/api/appdetails"
        for _ in range(3):
            assert (await fetch(session, api, appids=10))[0] == 200
            clock.advance(1)
        status, body, headers = await fetch(session, api, appids=10)
        assert (status, body) == (429, "null")
        assert no_rate_headers(headers)
        assert json.loads(body) is None  # "null" parses: the status must be checked first
        assert fake.count_429 == 1 and fake.requests_during_penalty == 0
        # Two more within 16 s of the last 429: both counted as sent during the penalty.
        clock.advance(5)
        assert (await fetch(session, api, appids=10))[0] == 429
        clock.advance(5)
        assert (await fetch(session, api, appids=10))[0] == 429
        assert fake.requests_during_penalty == 2
        # Recovery when the first served request leaves the sliding window (t0 + 300 s).
        clock.now = 1000.0 + 300.0
        assert (await fetch(session, api, appids=10))[0] == 200
        assert fake.requests_during_penalty == 2


async def test_rate_limit_recovers_in_real_time(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=(2, 0.4)) as fake:
        fake.set_price(10, "us", 999, 999, 0)
        api = f"{fake.url}/api/appdetails"
        statuses = [(await fetch(session, api, appids=10))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]
        deadline = time.monotonic() + 1.0
        status = 429
        while status == 429 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            status = (await fetch(session, api, appids=10))[0]
        assert status == 200


async def test_ban_after_repeated_429s(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    fake = FakeSteam(
        rate_limit=(2, 10.0), ban_after_429s=3, ban_seconds=60.0, penalty_seconds=16.0, clock=clock
    )
    async with fake:
        fake.set_price(10, "us", 999, 999, 0)
        api = f"{fake.url}/api/appdetails"
        assert [(await fetch(session, api, appids=10))[0] for _ in range(2)] == [200, 200]
        assert [(await fetch(session, api, appids=10))[0] for _ in range(3)] == [429, 429, 429]
        assert fake.is_banned()
        status, body, headers = await fetch(session, api, appids=10)
        assert status == 403 and "Access Denied" in body
        assert headers["Content-Type"].startswith("text/html")
        assert fake.count_403 == 1 and fake.count_429 == 3
        # 2 requests after the first 429 + 1 while banned.
        assert fake.requests_during_penalty == 3
        clock.advance(59)
        assert (await fetch(session, api, appids=10))[0] == 403
        clock.advance(2)
        assert not fake.is_banned()
        assert (await fetch(session, api, appids=10))[0] == 200


async def test_injected_faults(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None, timeout_delay=1.0) as fake:
        fake.set_price(10, "us", 999, 999, 0)
        fake.set_price(20, "us", 499, 499, 0)
        api = f"{fake.url}/api/appdetails"
        params = {"appids": "10,20", "filters": "price_overview", "cc": "us"}
        for kind in ("429", "403", "500", "502", "503", "truncated", "html", "400null"):
            fake.fail_next(1, kind)
        results = [await fetch(session, api, **params) for _ in range(8)]
        assert [r[0] for r in results] == [429, 403, 500, 502, 503, 200, 200, 400]
        assert results[0][1] == "null" and no_rate_headers(results[0][2])
        assert "Access Denied" in results[1][1]
        truncated = results[5]
        assert truncated[2]["Content-Type"].startswith("application/json")
        with pytest.raises(json.JSONDecodeError):
            json.loads(truncated[1])
        assert results[6][2]["Content-Type"].startswith("text/html")
        assert results[7][1] == "null"
        assert [r.fault for r in fake.requests] == [
            "429",
            "403",
            "500",
            "502",
            "503",
            "truncated",
            "html",
            "400null",
        ]
        assert (await fetch(session, api, **params))[0] == 200  # queue drained

        fake.fail_next(1, "timeout")
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(
                api, params=params, timeout=aiohttp.ClientTimeout(total=0.2)
            ) as resp:
                await resp.read()
        assert time.monotonic() - started < 0.9
        with pytest.raises(ValueError):
            fake.fail_next(1, "teapot")


async def test_chaos_is_seeded(session: aiohttp.ClientSession) -> None:
    async def run() -> list[int]:
        async with FakeSteam(rate_limit=None) as fake:
            fake.set_price(10, "us", 999, 999, 0)
            fake.chaos(rate=0.5, kinds=["500", "429"], seed=7)
            return [
                (await fetch(session, f"{fake.url}/api/appdetails", appids=10))[0]
                for _ in range(30)
            ]

    first, second = await run(), await run()
    assert first == second
    assert {200, 500, 429} == set(first)


async def test_latency_knob(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None, latency=0.2) as fake:
        started = time.monotonic()
        await fetch(session, f"{fake.url}/api/appdetails", appids=10)
        assert time.monotonic() - started >= 0.2


# ---------------------------------------------------------------------------- GetAppList


async def test_applist_key_and_paging(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None, api_key="testkey") as fake:
        for app_id in (50, 10, 40, 20, 30):
            fake.set_name(app_id, f"App {app_id}")
        api = f"{fake.url}/IStoreService/GetAppList/v1/"
        for params in ({}, {"key": "wrong"}, {"key": ""}):
            status, body, headers = await fetch(session, api, **params)
            assert status == 403 and headers["Content-Type"].startswith("text/html")
            assert "Forbidden" in body

        status, body, _ = await fetch(session, api, key="testkey", max_results=2)
        assert status == 200
        assert body.startswith('{\n  "response": {\n    "apps": [\n      {\n        "appid": 10,')
        page = json.loads(body)["response"]
        assert [a["appid"] for a in page["apps"]] == [10, 20]
        assert page["have_more_results"] is True and page["last_appid"] == 20
        assert set(page["apps"][0]) == {"appid", "name", "last_modified", "price_change_number"}

        _, body, _ = await fetch(session, api, key="testkey", max_results=2, last_appid=20)
        page = json.loads(body)["response"]
        assert [a["appid"] for a in page["apps"]] == [30, 40] and page["last_appid"] == 40

        _, body, _ = await fetch(session, api, key="testkey", max_results=2, last_appid=40)
        page = json.loads(body)["response"]
        assert [a["appid"] for a in page["apps"]] == [50]
        assert "have_more_results" not in page and "last_appid" not in page
        assert body.endswith("      }\n    ]\n  }\n}")

        _, body, _ = await fetch(session, api, key="testkey", last_appid=50)
        assert json.loads(body) == {"response": {}}


async def test_applist_limits_types_and_changes(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        for app_id in range(1, 50_011):
            fake.set_name(app_id, "x")
        api = f"{fake.url}/IStoreService/GetAppList/v1/"
        _, body, _ = await fetch(session, api, key="testkey")
        assert len(json.loads(body)["response"]["apps"]) == 10_000  # default
        _, body, _ = await fetch(session, api, key="testkey", max_results=60_000)
        page = json.loads(body)["response"]
        assert len(page["apps"]) == 50_000 and page["last_appid"] == 50_000  # cap

        fake.remove(50_001)
        fake.set_type(50_002, "dlc")
        _, body, _ = await fetch(session, api, key="testkey", last_appid=50_000)
        assert 50_001 not in [a["appid"] for a in json.loads(body)["response"]["apps"]]
        assert 50_002 not in [a["appid"] for a in json.loads(body)["response"]["apps"]]
        _, body, _ = await fetch(session, api, key="testkey", last_appid=50_000, include_dlc="true")
        assert 50_002 in [a["appid"] for a in json.loads(body)["response"]["apps"]]

        # A price change bumps last_modified and price_change_number; an identical one does not.
        since = int(time.time())
        before = fake.app_meta(7)
        assert before is not None and before[0] < since
        fake.set_price(7, "us", 999, 499, 50)
        after = fake.app_meta(7)
        assert after is not None and after[0] >= since and after[1] > before[1]
        fake.set_price(7, "us", 999, 499, 50)
        assert fake.app_meta(7) == after
        _, body, _ = await fetch(session, api, key="testkey", if_modified_since=since)
        changed = json.loads(body)["response"]
        assert [a["appid"] for a in changed["apps"]] == [7]
        assert changed["apps"][0]["price_change_number"] == after[1]
        assert "have_more_results" not in changed


# ---------------------------------------------------------------------------- snapshots


def write_snapshot(path: Path, rows: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("appid,discount,price\n")
        fh.writelines(row + "\n" for row in rows)
    return path


async def test_load_snapshot(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    day1 = write_snapshot(
        tmp_path / "d1.csv.gz",
        ["10,0,999", "20,50,999", "30,,", "40,0,0", "50,100,499", "60,75,", "70,67,659"],
    )
    async with FakeSteam(rate_limit=None) as fake:
        assert fake.load_snapshot(day1) == 7
        assert fake.get_price(10) == (999, 999, 0, "USD")
        assert fake.get_price(20) == (1998, 999, 50, "USD")
        assert fake.get_price(30) is None and fake.get_price(40) is None
        assert fake.get_price(50) == (499, 499, 100, "USD")
        assert fake.get_price(70) == (round(659 / 0.33), 659, 67, "USD")
        assert fake.app_count == 7
        _, body, _ = await fetch(
            session,
            f"{fake.url}/api/appdetails",
            appids="10,30,40,60,99",
            cc="us",
            filters="price_overview",
        )
        parsed = json.loads(body)
        assert parsed["30"] == parsed["40"] == parsed["60"] == {"success": True, "data": []}
        assert parsed["99"] == {"success": False}
        _, free, _ = await fetch(session, f"{fake.url}/api/appdetails", appids=40)
        assert json.loads(free)["40"]["data"]["is_free"] is True

        # The first load keeps default change data; a second load bumps only changes.
        untouched = fake.app_meta(10)
        assert untouched == (fake.catalog_epoch, 0)
        day2 = write_snapshot(tmp_path / "d2.csv", ["10,0,999", "20,0,1998", "80,0,199"])
        day2_plain = tmp_path / "d2-plain.csv"
        with gzip.open(day2, "rt", encoding="utf-8") as src:
            day2_plain.write_text(src.read(), encoding="utf-8")
        assert fake.load_snapshot(day2_plain) == 3
        assert fake.app_meta(10) == untouched
        meta20, meta80 = fake.app_meta(20), fake.app_meta(80)
        assert meta20 is not None and meta20[1] > 0
        assert meta80 is not None and meta80[1] > meta20[1]
        assert fake.get_price(20) == (1998, 1998, 0, "USD")


# ---------------------------------------------------------------------------- SteamSpy


async def test_steamspy_shapes_and_limits(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeSteam(rate_limit=None, clock=clock) as fake:
        for app_id in range(1, 1501):
            fake.set_name(app_id, f"App {app_id}")
        fake.set_price(1462040, "us", 3999, 1399, 65)
        api = f"{fake.url}/api.php"
        status, body, _ = await fetch(session, api, request="appdetails", appid=1462040)
        assert status == 200
        details = json.loads(body)
        assert (details["price"], details["initialprice"], details["discount"]) == (
            "1399",
            "3999",
            "65",
        )
        assert isinstance(details["tags"], dict) and details["tags"]
        assert {"owners", "ccu", "languages", "genre", "developer", "publisher"} <= set(details)

        # Same second again: 429 with a text body, recorded as a violation.
        status, body, headers = await fetch(session, api, request="appdetails", appid=1)
        assert status == 429 and headers["Content-Type"].startswith("text/plain")
        assert len(fake.steamspy_violations) == 1
        assert fake.steamspy_violations[0].request == "appdetails"

        clock.advance(1.0)
        _, body, _ = await fetch(session, api, request="all", page=0)
        page0 = json.loads(body)
        assert len(page0) == 1000 and "tags" not in page0["1"]
        assert page0["1"]["price"] == "0"
        clock.advance(1.0)
        assert (await fetch(session, api, request="all", page=1))[0] == 429  # all: 1 per 60 s
        assert fake.steamspy_violations[-1].request == "all"
        clock.advance(60.0)
        _, body, _ = await fetch(session, api, request="all", page=1)
        assert len(json.loads(body)) == 501  # 500 named + 1462040
        clock.advance(60.0)
        assert (await fetch(session, api, request="all", page=2))[1] == "{}"
        assert len(fake.steamspy_violations) == 2


# ---------------------------------------------------------------------------- Discord


def embed(**extra: Any) -> dict[str, Any]:
    return {"title": "Deal", "description": "50% off", "url": "https://example.test/1", **extra}


async def test_discord_wait_and_no_wait(session: aiohttp.ClientSession) -> None:
    async with FakeDiscord() as fake:
        assert fake.webhook_url("1", "a") == f"{fake.url}/api/webhooks/1/a"
        assert fake.webhook_url("1", "a", 10) == f"{fake.url}/api/v10/webhooks/1/a"
        status, body, headers = await post(
            session, fake.webhook_url("1", "a"), {"content": "hi", "embeds": [embed()]}
        )
        assert (status, body) == (204, "")
        assert headers["X-RateLimit-Limit"] == "5" and headers["X-RateLimit-Remaining"] == "4"
        assert {"X-RateLimit-Reset", "X-RateLimit-Reset-After", "X-RateLimit-Bucket"} <= set(
            headers
        )
        status, body, _ = await post(
            session, fake.webhook_url("1", "a", 10) + "?wait=true", {"embeds": [embed()]}
        )
        assert status == 200
        message = json.loads(body)
        assert message["id"].isdigit() and message["channel_id"] == fake.channel_of("1")
        assert message["embeds"][0]["title"] == "Deal"
    assert [(m.api_version, m.wait) for m in fake.messages] == [(6, False), (10, True)]
    assert fake.messages[1].message_id == message["id"]


async def test_discord_bucket_429_ms_for_v6_seconds_for_v10(
    session: aiohttp.ClientSession,
) -> None:
    clock = ManualClock()
    async with FakeDiscord(clock=clock) as fake:
        for version, hook in ((None, "6"), (10, "10")):
            url = fake.webhook_url(hook, "tok", version)
            remaining = []
            for _ in range(5):
                status, _, headers = await post(session, url, {"content": "x"})
                assert status == 204
                remaining.append(headers["X-RateLimit-Remaining"])
            assert remaining == ["4", "3", "2", "1", "0"]
            clock.advance(0.5)
            status, body, headers = await post(session, url, {"content": "x"})
            assert status == 429
            data = json.loads(body)
            assert data["message"] == "You are being rate limited." and data["global"] is False
            assert headers["X-RateLimit-Scope"] == "user" and headers["Retry-After"] == "2"
            assert float(headers["X-RateLimit-Reset-After"]) == pytest.approx(1.5)
            if version is None:
                assert data["retry_after"] == 1500  # milliseconds
            else:
                assert data["retry_after"] == pytest.approx(1.5)  # seconds
            clock.advance(1.5)
    assert fake.count_429 == 2
    assert fake.requests_in_retry_window == 0


async def test_discord_requests_in_retry_window(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeDiscord(bucket=(1, 2.0), clock=clock) as fake:
        url = fake.webhook_url("1", "t", 10)
        assert (await post(session, url, {"content": "a"}))[0] == 204
        status, body, _ = await post(session, url, {"content": "b"})
        assert status == 429 and fake.requests_in_retry_window == 0
        retry = json.loads(body)["retry_after"]
        clock.advance(retry / 2)
        assert (await post(session, url, {"content": "b"}))[0] == 429  # too early
        assert fake.requests_in_retry_window == 1
        # Another webhook is not inside this window.
        assert (await post(session, fake.webhook_url("2", "t", 10), {"content": "c"}))[0] == 204
        clock.advance(retry)
        assert (await post(session, url, {"content": "b"}))[0] == 204
        assert fake.requests_in_retry_window == 1
        assert [r.in_retry_window for r in fake.requests] == [False, False, True, False, False]


async def test_discord_hidden_channel_limit(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeDiscord(bucket=(100, 1.0), channel_limit=(3, 60.0), clock=clock) as fake:
        fake.set_channel("2", fake.channel_of("1"))  # two webhooks, one channel
        urls = [fake.webhook_url("1", "t", 10), fake.webhook_url("2", "t", 10)]
        for i in range(3):
            assert (await post(session, urls[i % 2], {"content": str(i)}))[0] == 204
            clock.advance(10)
        status, body, headers = await post(session, urls[1], {"content": "4"})
        assert status == 429 and headers["X-RateLimit-Scope"] == "shared"
        assert json.loads(body)["retry_after"] == pytest.approx(30.0)  # first send + 60 s
        assert int(headers["X-RateLimit-Remaining"]) > 0  # hidden: not in the headers
        assert headers["Retry-After"] == "30"
        clock.advance(30)
        assert (await post(session, urls[1], {"content": "4"}))[0] == 204
        assert len(fake.messages) == 4


async def test_discord_global_limits(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeDiscord(global_limit=(3, 1.0), global_retry_after=2.0, clock=clock) as fake:
        for i in range(3):
            assert (await post(session, fake.webhook_url(str(i)), {"content": "x"}))[0] == 204
        status, body, headers = await post(
            session, fake.webhook_url("9", "t", 10), {"content": "x"}
        )
        assert status == 429 and json.loads(body)["global"] is True
        assert headers["X-RateLimit-Global"] == "true" and headers["X-RateLimit-Scope"] == "global"
        clock.advance(1.0)

        fake.global_rate_limited = True
        status, body, headers = await post(session, fake.webhook_url("1"), {"content": "x"})
        assert status == 429 and json.loads(body) == {
            "message": "You are being rate limited.",
            "retry_after": 2000,
            "global": True,
        }
        # Any webhook inside a global window counts.
        assert (await post(session, fake.webhook_url("5"), {"content": "x"}))[0] == 429
        assert fake.requests_in_retry_window == 1
        fake.global_rate_limited = False
        clock.advance(2.0)
        fake.fail_next(1, "global429")
        status, body, headers = await post(
            session, fake.webhook_url("1", "t", 10), {"content": "x"}
        )
        assert status == 429 and headers["X-RateLimit-Global"] == "true"
        assert json.loads(body)["retry_after"] == pytest.approx(2.0)


def too_long(errors: dict[str, Any], *path: str) -> bool:
    node: Any = errors
    for key in path:
        node = node[key]
    return any(e["code"] == "BASE_TYPE_MAX_LENGTH" for e in node["_errors"])


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"content": "x" * 2001}, ("content",)),
        ({"embeds": [embed() for _ in range(11)]}, ("embeds",)),
        ({"embeds": [embed(title="x" * 257)]}, ("embeds", "0", "title")),
        ({"embeds": [embed(description="x" * 4097)]}, ("embeds", "0", "description")),
        (
            {"embeds": [embed(fields=[{"name": "n", "value": "v"}] * 26)]},
            ("embeds", "0", "fields"),
        ),
        (
            {"embeds": [embed(fields=[{"name": "n" * 257, "value": "v"}])]},
            ("embeds", "0", "fields", "0", "name"),
        ),
        (
            {"embeds": [embed(fields=[{"name": "n", "value": "v" * 1025}])]},
            ("embeds", "0", "fields", "0", "value"),
        ),
        ({"embeds": [embed(footer={"text": "f" * 2049})]}, ("embeds", "0", "footer", "text")),
        ({"embeds": [embed(author={"name": "a" * 257})]}, ("embeds", "0", "author", "name")),
    ],
)
async def test_discord_limits_give_50035(
    session: aiohttp.ClientSession, payload: dict[str, Any], path: tuple[str, ...]
) -> None:
    async with FakeDiscord(bucket=(100, 1.0)) as fake:
        status, body, _ = await post(session, fake.webhook_url(version=10), payload)
        assert status == 400
        error = json.loads(body)
        assert error["code"] == 50035 and error["message"] == "Invalid Form Body"
        assert too_long(error["errors"], *path)
        assert fake.messages == []


async def test_discord_total_size_bad_json_and_edges(session: aiohttp.ClientSession) -> None:
    async with FakeDiscord(bucket=(100, 1.0)) as fake:
        url = fake.webhook_url(version=10)
        two = {"embeds": [{"description": "d" * 3001}, {"description": "d" * 3000}]}
        status, body, _ = await post(session, url, two)
        assert status == 400
        error = json.loads(body)
        assert error["code"] == 50035
        assert error["errors"]["embeds"]["_errors"][0]["code"] == "MAX_EMBED_SIZE_EXCEEDED"
        # Exactly at every limit, 6000 characters in all, is fine.
        at_limit = {
            "content": "c" * 2000,
            "embeds": [
                {
                    "title": "t" * 256,
                    "description": "d" * 1448,
                    "fields": [{"name": "n" * 256, "value": "v" * 1024}] * 3,
                    "footer": {"text": "f" * 200},
                    "author": {"name": "a" * 256},
                },
            ],
        }
        assert (await post(session, url, at_limit))[0] == 204
        status, body, _ = await post(session, url, None, raw="{not json")
        assert status == 400 and json.loads(body)["code"] == 50035
        status, body, _ = await post(session, url, {"content": ""})
        assert status == 400 and json.loads(body)["code"] == 50006


async def test_discord_deleted_and_invalid_token(session: aiohttp.ClientSession) -> None:
    async with FakeDiscord() as fake:
        url = fake.webhook_url("77", "t", 10)
        assert (await post(session, url, {"content": "x"}))[0] == 204
        fake.delete_webhook("77")
        status, body, _ = await post(session, url, {"content": "x"})
        assert (status, json.loads(body)) == (404, {"message": "Unknown Webhook", "code": 10015})
        assert fake.calls_after_delete == 0
        assert (await post(session, url, {"content": "x"}))[0] == 404
        assert fake.calls_after_delete == 1

        fake.invalid_token("88")
        status, body, _ = await post(session, fake.webhook_url("88"), {"content": "x"})
        assert (status, json.loads(body)) == (
            401,
            {"message": "Invalid Webhook Token", "code": 50027},
        )
        assert len(fake.messages) == 1


async def test_discord_cloudflare_and_5xx_faults(session: aiohttp.ClientSession) -> None:
    async with FakeDiscord(timeout_delay=1.0) as fake:
        url = fake.webhook_url(version=10)
        fake.fail_next(1, "cloudflare")
        status, body, headers = await post(session, url, {"content": "x"})
        assert status == 429 and no_rate_headers(headers)
        data = json.loads(body)
        assert data["code"] == 0 and data["message"].startswith("You are being blocked")
        assert fake.count_429 == 1
        for kind in ("500", "502", "503"):
            fake.fail_next(1, kind)
            status, _, headers = await post(session, url, {"content": "x"})
            assert status == int(kind) and no_rate_headers(headers)
        assert fake.requests_after_cloudflare == 3

        fake.fail_next(1, "timeout")
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(
                url, json={"content": "x"}, timeout=aiohttp.ClientTimeout(total=0.2)
            ) as resp:
                await resp.read()
        assert fake.messages == []  # a timed-out send is not delivered
        status, _, _ = await post(session, f"{fake.url}/api/v5/webhooks/1/t", {"content": "x"})
        assert status == 404
        with pytest.raises(ValueError):
            fake.fail_next(1, "429")
