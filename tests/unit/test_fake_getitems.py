"""Unit tests of the fake ``IStoreBrowseService/GetItems/v1`` (discount end dates).

Each promise of the fake's docstring that follows ``/work/shared/docs/steam-api.md`` ("Discount
end dates") is proven against a real socket: request shape, one item per requested id, int64
fields as strings, the unknown / not-sold-here / free shapes, the URL limit, its own rate limit
with ``x-eresult``, odd items and faults. Limits run on a hand-moved clock: nothing sleeps.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
import yarl

from tests.support.fakes import ManualClock
from tests.support.fakes.steam import FakeSteam
from tests.support.steam_doc import blue_fire_item

PATH = "/IStoreBrowseService/GetItems/v1/"


def items_url(base: str, app_ids: list[int], cc: str | None = "us", **extra: Any) -> yarl.URL:
    request: dict[str, Any] = {"ids": [{"appid": a} for a in app_ids]}
    if cc is not None:
        request["context"] = {"language": "english", "country_code": cc.upper(), "steam_realm": 1}
    request.update(extra)
    compact = json.dumps(request, separators=(",", ":"))
    return yarl.URL(base + PATH).with_query(input_json=compact)


async def get(session: aiohttp.ClientSession, url: yarl.URL) -> tuple[int, str, dict[str, str]]:
    async with session.get(url) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def items(
    session: aiohttp.ClientSession, fake: FakeSteam, app_ids: list[int], cc: str = "us"
) -> list[dict[str, Any]]:
    status, body, _ = await get(session, items_url(fake.url, app_ids, cc))
    assert status == 200, body
    found: list[dict[str, Any]] = json.loads(body)["response"].get("store_items", [])
    return found


async def test_discounted_unknown_free_and_unsold_items_follow_the_doc(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        fake.set_name(1220150, "Blue Fire")
        fake.set_price(1220150, "us", 1999, 499, 75)
        fake.set_discount_end(1220150, 1734544800)
        fake.set_no_price(570, free=True)
        fake.set_price(20, "de", 999, 999, 0)  # sold in Germany only
        status, body, headers = await get(session, items_url(fake.url, [1220150, 9999999, 570, 20]))
    assert status == 200 and headers["x-eresult"] == "1"
    assert headers["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    # Pretty-printed like every Web API answer (GetAppList's recorded pages).
    assert body == json.dumps(doc, indent=2, ensure_ascii=False)
    discounted, unknown, free, unsold = doc["response"]["store_items"]
    expected = blue_fire_item(fake.package_id(1220150))
    assert discounted == expected
    assert list(discounted) == list(expected)
    assert list(discounted["best_purchase_option"]) == list(expected["best_purchase_option"])
    assert unknown == {
        "item_type": 0,
        "id": 9999999,
        "success": 15,
        "visible": False,
        "name": "",
        "store_url_path": "app/0/",
        "appid": 0,
    }
    assert free == {
        "item_type": 0,
        "id": 570,
        "success": 1,
        "visible": True,
        "name": "Fake App 570",
        "store_url_path": "app/570/Fake_App_570",
        "appid": 570,
        "type": 0,
        "is_free": True,
    }
    assert unsold == {
        "item_type": 0,
        "id": 20,
        "success": 15,
        "visible": False,
        "unvailable_for_country_restriction": True,
        "name": "",
        "store_url_path": "app/0/",
        "appid": 0,
    }


async def test_not_discounted_option_leaves_the_discount_fields_out(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        fake.set_price(10, "us", 999, 999, 0)
        fake.set_price(11, "us", 0, 0, 100)  # free-to-keep oddity: a percentage, no cut
        fake.set_type(12, "dlc")
        fake.set_price(12, "us", 499, 249, 50)
        full, odd, dlc = await items(session, fake, [10, 11, 12])
    assert full["best_purchase_option"] == {
        "packageid": fake.package_id(10),
        "purchase_option_name": "Fake App 10",
        "final_price_in_cents": "999",
        "formatted_final_price": "$9.99",
        "user_can_purchase_as_gift": True,
    }
    assert "discount_pct" not in odd["best_purchase_option"]
    assert "active_discounts" not in odd["best_purchase_option"]
    assert dlc["type"] == 4 and dlc["best_purchase_option"]["discount_pct"] == 50


async def test_one_item_per_requested_id_in_order_duplicates_and_other_kinds(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        for app_id in (10, 20, 30):
            fake.set_price(app_id, "us", 999, 499, 50)
        found = await items(session, fake, [30, 10, 30, 777, 20])
        assert [i["id"] for i in found] == [30, 10, 30, 777, 20]
        assert [i["success"] for i in found] == [1, 1, 1, 15, 1]

        request = {"ids": [{"packageid": 5}, {"bundleid": 6}, {"appid": 10}, {"tagid": 9}]}
        url = yarl.URL(fake.url + PATH).with_query(input_json=json.dumps(request))
        status, body, _ = await get(session, url)
        assert status == 200
        package, bundle, app = json.loads(body)["response"]["store_items"]
        assert (package["item_type"], package["id"], package["success"]) == (1, 5, 15)
        assert (bundle["item_type"], bundle["id"], bundle["success"]) == (2, 6, 15)
        assert "appid" not in package and app["appid"] == 10

        # The variant one caller reports: unknown ids simply left out.
        fake.getitems_omit_unknown = True
        found = await items(session, fake, [777, 10, 778])
        assert [i["id"] for i in found] == [10]
        status, body, _ = await get(session, items_url(fake.url, [777]))
        assert (status, body) == (200, '{\n  "response": {}\n}')


async def test_region_follows_country_code_and_defaults_to_us(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        fake.set_price(10, "us", 1999, 999, 50)
        fake.set_price(10, "de", 1799, 899, 50)
        fake.set_discount_end(10, 1_800_000_000, cc="de")
        [us] = await items(session, fake, [10], "us")
        [de] = await items(session, fake, [10], "de")
        status, body, _ = await get(session, items_url(fake.url, [10], cc=None))
    assert us["best_purchase_option"]["final_price_in_cents"] == "999"
    option = de["best_purchase_option"]
    assert option["final_price_in_cents"] == "899"
    assert option["original_price_in_cents"] == "1799"
    assert option["formatted_final_price"] == "8,99€"  # the currency shows only here
    assert option["active_discounts"][0]["discount_end_date"] == 1_800_000_000
    end_us = us["best_purchase_option"]["active_discounts"][0]["discount_end_date"]
    assert end_us == fake.default_discount_end != 1_800_000_000
    assert status == 200
    assert (
        json.loads(body)["response"]["store_items"][0]["best_purchase_option"]
        == us["best_purchase_option"]
    )


async def test_same_state_as_appdetails_and_an_end_date_the_test_moves(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeSteam(rate_limit=None, default_discount_end=1_700_000_000) as fake:
        fake.set_price(10, "us", 1999, 999, 50)
        async with session.get(
            f"{fake.url}/api/appdetails", params={"appids": "10", "cc": "us"}
        ) as resp:
            details = (await resp.json())["10"]["data"]
        [item] = await items(session, fake, [10])
        option = item["best_purchase_option"]
        overview = details["price_overview"]
        # The package appdetails lists is the one GetItems offers, at the same prices.
        assert details["packages"] == [option["packageid"]] == [fake.package_id(10)]
        assert int(option["final_price_in_cents"]) == overview["final"]
        assert int(option["original_price_in_cents"]) == overview["initial"]
        assert option["discount_pct"] == overview["discount_percent"]
        assert option["active_discounts"][0]["discount_end_date"] == 1_700_000_000

        fake.set_discount_end(10, 1_700_600_000)  # the sale is extended
        [item] = await items(session, fake, [10])
        assert item["best_purchase_option"]["active_discounts"][0]["discount_end_date"] == (
            1_700_600_000
        )
        assert fake.discount_end(10) == 1_700_600_000

        fake.set_price(10, "us", 1999, 1999, 0)  # the sale ends
        [item] = await items(session, fake, [10])
        assert "active_discounts" not in item["best_purchase_option"]
        assert fake.discount_end(10) is None
        fake.set_price(10, "us", 1999, 1499, 25)  # the next sale has its own end date
        assert fake.discount_end(10) == 1_700_000_000


async def test_coming_soon_and_all_purchase_options(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        fake.set_coming_soon(40)
        fake.set_price(10, "us", 999, 499, 50)
        [soon] = await items(session, fake, [40])
        url = items_url(fake.url, [10], data_request={"include_all_purchase_options": True})
        status, body, _ = await get(session, url)
    assert soon["success"] == 1 and soon["is_coming_soon"] is True
    assert "best_purchase_option" not in soon and "unvailable_for_country_restriction" not in soon
    [item] = json.loads(body)["response"]["store_items"]
    assert status == 200 and item["purchase_options"] == [item["best_purchase_option"]]


async def test_odd_items_are_served_verbatim_per_region(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        fake.set_price(10, "us", 1999, 999, 50)
        fake.set_price(10, "de", 1999, 999, 50)
        odd = fake.store_item(10)
        option = odd["best_purchase_option"]
        option["packageid"] = 1
        option["active_discounts"].append(
            {"discount_amount": "200", "discount_end_date": 1_700_000_000}
        )
        fake.set_store_item(10, "us", odd)
        [us] = await items(session, fake, [10], "us")
        [de] = await items(session, fake, [10], "de")
        assert us == odd and len(us["best_purchase_option"]["active_discounts"]) == 2
        assert de["best_purchase_option"]["packageid"] == fake.package_id(10)

        fake.set_store_item(10, None, '{"item_type":0,"id":10,"success":1}')
        [de] = await items(session, fake, [10], "de")
        assert de == {"item_type": 0, "id": 10, "success": 1}
        fake.set_store_item(10, None, '{"id":10,')  # broken: spoils the whole answer
        status, body, _ = await get(session, items_url(fake.url, [10], "de"))
        assert status == 200
        with pytest.raises(ValueError):
            json.loads(body)
        fake.set_store_item(10, None, None)
        fake.set_store_item(10, "us", None)
        [us] = await items(session, fake, [10], "us")
        assert us["best_purchase_option"]["packageid"] == fake.package_id(10)


async def test_only_get_with_input_json(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        url = items_url(fake.url, [10])
        async with session.post(url) as resp:
            assert resp.status == 405
            assert "GET" in await resp.text()
        for query in ({}, {"input_json": "{not json"}, {"input_json": '{"ids":7}'}):
            status, body, _ = await get(session, yarl.URL(fake.url + PATH).with_query(query))
            assert status == 400 and "input_json" in body
        # Without the trailing slash too, like GetAppList.
        status, _, _ = await get(
            session, yarl.URL(fake.url + PATH.rstrip("/")).with_query(url.query)
        )
        assert status == 200
    assert [r.status for r in fake.requests] == [405, 400, 400, 400, 200]


async def test_a_url_over_the_limit_answers_400(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None) as fake:
        under, over = None, None
        for n in range(200, 600):
            url = items_url(fake.url, list(range(1_000_000, 1_000_000 + n)))
            if len(str(url)) <= 8_000:
                under = url
            else:
                over = url
                break
        assert under is not None and over is not None
        status, body, _ = await get(session, under)
        assert status == 200 and len(json.loads(body)["response"]["store_items"]) > 250
        status, body, _ = await get(session, over)
        assert status == 400 and "Bad Request" in body
        fake.getitems_max_url = 2_000
        status, _, _ = await get(session, items_url(fake.url, list(range(1_000_000, 1_000_080))))
        assert status == 400
    assert [r.status for r in fake.requests] == [200, 400, 400]


async def test_own_rate_limit_answers_429_with_x_eresult(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeSteam(rate_limit=(2, 10.0), getitems_rate_limit=(3, 10.0), clock=clock) as fake:
        fake.set_price(10, "us", 999, 499, 50)
        statuses = []
        for _ in range(4):
            status, _, headers = await get(session, items_url(fake.url, [10]))
            statuses.append((status, headers.get("x-eresult")))
        assert statuses == [(200, "1"), (200, "1"), (200, "1"), (429, "84")]
        assert "Retry-After" not in headers
        assert fake.getitems_429 == 1
        # Another host in reality: the store's own limiter and counters are untouched.
        async with session.get(f"{fake.url}/api/appdetails", params={"appids": "10"}) as resp:
            assert resp.status == 200
        assert fake.count_429 == 0
        clock.advance(10.0)
        status, _, _ = await get(session, items_url(fake.url, [10]))
        assert status == 200


async def test_faults_outage_and_storm(session: aiohttp.ClientSession) -> None:
    async with FakeSteam(rate_limit=None, getitems_rate_limit=None, timeout_delay=0.05) as fake:
        fake.set_price(10, "us", 999, 499, 50)
        url = items_url(fake.url, [10])

        fake.fail_next(1, "eresult84", "getitems")
        status, body, headers = await get(session, url)
        assert (status, body, headers["x-eresult"]) == (200, '{\n  "response": {}\n}', "84")

        fake.fail_all("429", "getitems")
        for _ in range(3):
            status, _, headers = await get(session, url)
            assert (status, headers["x-eresult"]) == (429, "84")
        # The storm is GetItems' own: appdetails answers.
        async with session.get(f"{fake.url}/api/appdetails", params={"appids": "10"}) as resp:
            assert resp.status == 200
        fake.fail_all("503", "getitems")
        status, body, _ = await get(session, url)
        assert status == 503 and "Service Unavailable" in body
        fake.fail_all(None, "getitems")

        fake.fail_next(1, "truncated", "getitems")
        fake.fail_next(1, "403", "getitems")
        fake.fail_next(1, "timeout", "getitems")
        status, body, _ = await get(session, url)
        assert status == 200
        with pytest.raises(ValueError):
            json.loads(body)
        status, _, _ = await get(session, url)
        assert status == 403
        status, body, _ = await get(session, url)  # stalled, then answered
        assert status == 200 and json.loads(body)["response"]["store_items"][0]["id"] == 10
        assert fake.getitems_429 == 4
        assert [r.fault for r in fake.requests if r.path == PATH] == [
            "eresult84",
            "429",
            "429",
            "429",
            "503",
            "truncated",
            "403",
            "timeout",
        ]
        assert all(r.n_appids == 1 for r in fake.requests if r.path == PATH)
        with pytest.raises(ValueError):
            fake.fail_all("nonsense", "getitems")
