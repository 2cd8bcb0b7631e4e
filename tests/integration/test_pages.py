"""The price pages in a real browser, against a worker that priced the fake store's apps.

Headless Chromium (Debian's package) opens /prices, /apps/<id> and /changes at desktop width and
at 390 px (a phone), reads the visible text and the chart's points from the DOM and saves
screenshots (their paths are printed; ``ARTIFACTS_DIR`` keeps them). App names carry HTML and
script: they must show as text and no script may run. Errors, methods and secrets are checked
over plain HTTP; a MySQL outage (stuck, then dead) must give a quick 503, not a hang.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from typing import Any

import aiohttp

from tests.support.browser import DESKTOP, PHONE, Screenshots
from tests.support.checks import leaks
from tests.support.fakes import FakeSteam
from tests.support.infra import PrivateMariaDB, wait_for
from tests.support.processes import Pipeline, Worker

HALF_LIFE = 'Half-Life <b>2</b> & "friends"'
SCRIPT_NAME = "<script>window.__pwned = 1</script>Evil"
IMG_NAME = '<img src=x onerror="window.__pwned = 2">Tricky'
SECRET = "tok-integration-secret"  # the Discord webhook token of the pipeline fixture

CHANGES = "SELECT app_id, cc, kind FROM price_changes ORDER BY observed_at, app_id, cc"


async def price_round(pipeline: Pipeline, want_changes: int) -> None:
    """Seed every app and wait until ``want_changes`` changes are recorded and prices written."""
    await pipeline.cli("seed", "10", "20", "30", "570")

    async def changes() -> bool:
        rows = await pipeline.query("SELECT COUNT(*) FROM price_changes")
        return bool(rows) and rows[0][0] >= want_changes

    await wait_for(f"{want_changes} price changes", changes, timeout=90)


async def priced_worker(pipeline: Pipeline, steam: FakeSteam) -> Worker:
    """Three rounds of prices: a sale in the US that starts and ends, a list price cut, a UK sale."""
    steam.set_name(10, HALF_LIFE)
    steam.set_name(20, SCRIPT_NAME)
    steam.set_name(30, IMG_NAME)
    steam.set_price(10, "us", 999, 999, 0)
    steam.set_price(10, "gb", 719, 719, 0)
    steam.set_price(10, "jp", 120000, 120000, 0)
    steam.set_price(20, "us", 499, 499, 0)
    steam.set_price(20, "gb", 399, 399, 0)
    steam.set_price(30, "us", 1999, 1999, 0)
    steam.set_price(30, "gb", 1599, 1599, 0)
    steam.set_no_price(570)
    worker = pipeline.worker(
        STEAM_COUNTRIES="us,gb,jp", SEED_DEDUPE_SECONDS="0", ENABLE_STEAMSPY="true"
    )
    await worker.start()

    async def all_priced() -> bool:
        rows = await pipeline.query("SELECT COUNT(*) FROM price_current")
        return bool(rows) and rows[0][0] == 12

    await pipeline.cli("seed", "10", "20", "30", "570")
    await wait_for("12 price_current rows", all_priced, timeout=90)

    steam.set_price(10, "us", 999, 499, 50)  # a sale starts
    steam.set_price(30, "us", 1499, 1499, 0)  # the list price drops
    steam.set_price(30, "gb", 1599, 1199, 25)  # a sale starts in the UK
    await price_round(pipeline, 3)
    steam.set_price(10, "us", 999, 999, 0)  # the US sale ends
    await price_round(pipeline, 4)

    async def settled() -> bool:
        named = await pipeline.query("SELECT COUNT(*) FROM apps WHERE name IS NOT NULL")
        current = await pipeline.query(
            "SELECT final_price FROM price_current WHERE app_id = 10 AND cc = 'us'"
        )
        return named == [(4,)] and current == [(999,)]

    await wait_for("names from SteamSpy and the last price", settled, timeout=90)
    return worker


async def get(url: str, method: str = "GET") -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.request(method, url) as r:
        return r.status, await r.text(), dict(r.headers)


def chart_prices(chart: dict[str, Any]) -> list[tuple[float, float]]:
    """The price polyline's points as (x, price in x100 units), from the SVG's own scale."""
    top, bottom, top_price = chart["top"], chart["bottom"], chart["priceMax"]
    out = []
    for line in chart["lines"]:
        for pair in line.split():
            x, y = (float(v) for v in pair.split(","))
            out.append((x, (bottom - y) / (bottom - top) * top_price))
    return out


CHART_JS = """(cc) => {
  const svg = document.querySelector(`svg.chart[data-cc="${cc}"]`);
  if (!svg) return null;
  const num = (name) => Number(svg.dataset[name]);
  return {
    top: num("plotTop"), bottom: num("plotBottom"), priceMax: num("priceMax"),
    lines: [...svg.querySelectorAll("polyline.price")].map(p => p.getAttribute("points")),
    sales: [...svg.querySelectorAll("rect.sale")].map(r => Number(r.dataset.discount)),
    lowMarks: [...svg.querySelectorAll("circle.low")].map(c => Number(c.getAttribute("cy"))),
    lowLine: svg.querySelector("line.low-line")?.dataset.low ?? null,
    width: svg.getBoundingClientRect().width,
  };
}"""

# Script elements or event handlers that came from data (the pages themselves have none).
INJECTED_JS = """() => ({
  pwned: window.__pwned ?? null,
  scripts: document.querySelectorAll("script").length,
  imgs: document.querySelectorAll("img").length,
  handlers: [...document.querySelectorAll("*")].filter(
      e => [...e.attributes].some(a => a.name.startsWith("on"))).length,
})"""


async def no_injection(page: Any, dialogs: list[str]) -> None:
    found = await page.evaluate(INJECTED_JS)
    assert found == {"pwned": None, "scripts": 0, "imgs": 0, "handlers": 0}, found
    assert dialogs == []


async def overflow(page: Any) -> int:
    """How far the page is wider than the viewport (0: no sideways scrolling)."""
    return int(
        await page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


async def test_price_pages_in_a_browser(
    pipeline: Pipeline, steam: FakeSteam, browser: Any, screenshots: Screenshots
) -> None:
    worker = await priced_worker(pipeline, steam)
    base = worker.url
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))

    # /prices: every tracked app with its US price, discount, low and last change.
    response = await page.goto(f"{base}/prices?sort=app_id")
    assert response.status == 200
    assert "script-src" not in response.headers["content-security-policy"]  # none allowed
    rows = await page.locator("#prices tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    assert [r[0] for r in rows] == [
        f"{HALF_LIFE} #10",
        f"{SCRIPT_NAME} #20",
        f"{IMG_NAME} #30",
        "Fake App 570 #570",
    ]
    by_app = {r[0].rsplit("#", 1)[1]: r for r in rows}
    assert by_app["10"][1:5] == ["$9.99", "", "$4.99", "Sale ended " + by_app["10"][4][-10:]]
    assert by_app["10"][5] == "GB £7.19 · JP ¥1,200"
    assert by_app["20"][1:4] == ["$4.99", "", "$4.99 at low"]
    assert by_app["30"][1:4] == ["$14.99", "", "$14.99 at low"]
    assert by_app["30"][4].startswith("Price decreased")
    assert by_app["570"][1] == "no price" and by_app["570"][3] == "—"
    await no_injection(page, dialogs)
    await screenshots.take(page, "prices-desktop")

    # Filters, search, sort and paging through the form and the links, as a visitor would.
    await page.goto(f"{base}/prices")
    await page.select_option("select[name=cc]", "gb")
    await page.fill("input[name=min_discount]", "20")
    await page.click("button[type=submit]")
    assert re.search(r"cc=gb", page.url) and "min_discount=20" in page.url
    gb_sale = await page.locator("#prices tbody tr").all_inner_texts()
    assert len(gb_sale) == 1 and IMG_NAME in gb_sale[0] and "-25%" in gb_sale[0]
    assert "£15.99" in gb_sale[0] and "£11.99" in gb_sale[0]

    await page.goto(f"{base}/prices?at_low=1&sort=price")
    at_low = await page.locator("#prices tbody tr").evaluate_all("r => r.map(x => x.dataset.appId)")
    assert at_low == ["20", "30"]  # app 10 is back at $9.99, its low was $4.99
    await page.goto(f"{base}/prices?sort=price_desc")
    assert await page.locator("#prices tbody tr").evaluate_all(
        "r => r.map(x => x.dataset.appId)"
    ) == ["30", "10", "20"]  # priced apps only

    await page.goto(f"{base}/prices")
    await page.fill("input[name=q]", "evil")
    await page.press("input[name=q]", "Enter")
    found = await page.locator("#prices tbody tr").evaluate_all("r => r.map(x => x.dataset.appId)")
    assert found == ["20"]
    await page.goto(f"{base}/prices?q=570")
    assert await page.locator("#prices tbody tr").count() == 1
    await page.goto(f"{base}/prices?q=nothing%25like_this")
    assert "No tracked app matches" in await page.inner_text("main")

    await page.goto(f"{base}/prices?sort=app_id&per_page=3")
    first = await page.locator("#prices tbody tr").evaluate_all("r => r.map(x => x.dataset.appId)")
    await page.click("a[rel=next]")
    second = await page.locator("#prices tbody tr").evaluate_all("r => r.map(x => x.dataset.appId)")
    assert (first, second) == (["10", "20", "30"], ["570"])
    assert await page.locator("a[rel=next]").count() == 0
    await page.click("a[rel=prev]")
    assert page.url.endswith("/prices?cc=us&sort=app_id&per_page=3")

    # /apps/10: per region the price, both lows with dates, the step chart, the changes.
    response = await page.goto(f"{base}/apps/10")
    assert response.status == 200
    assert await page.inner_text("#app-name") == HALF_LIFE
    assert await page.get_attribute("a[href^='https://store']", "href") == (
        "https://store.steampowered.com/app/10/"
    )
    us = page.locator("#region-us")
    assert (await us.locator(".current").inner_text()).strip() == "$9.99"
    us_low = await us.locator(".historical-low").inner_text()
    assert us_low.startswith("$4.99 ") and "at low" not in us_low
    assert (await us.locator(".low-90d").inner_text()).startswith("$4.99 ")
    gb_low = await page.locator("#region-gb .historical-low").inner_text()
    assert gb_low.startswith("£7.19 ") and gb_low.endswith("at low now")
    assert (await page.locator("#region-jp .current").inner_text()).strip() == "¥1,200"

    chart = await page.evaluate(CHART_JS, "us")
    points = chart_prices(chart)
    # Three periods: $9.99, the $4.99 sale, $9.99 again, as steps from left to right.
    assert len(points) == 6
    assert [round(p) for _, p in points] == [999, 999, 499, 499, 999, 999]
    xs = [x for x, _ in points]
    assert xs == sorted(xs) and xs[0] < xs[1] < xs[3] < xs[5]
    assert chart["sales"] == [50]
    assert chart["lowLine"] == "499"
    [low_mark] = chart["lowMarks"]
    assert (
        abs(
            (chart["bottom"] - low_mark) / (chart["bottom"] - chart["top"]) * chart["priceMax"]
            - 499
        )
        < 1
    )
    gb_chart = chart_prices(await page.evaluate(CHART_JS, "gb"))
    assert [round(p) for _, p in gb_chart] == [719, 719]

    changes = await page.locator("#changes tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].slice(1).map(c => c.innerText.trim()))"
    )
    # The fake store announces when its sales end (GetItems): once the answer is in, the
    # sale's row says so (end dates themselves are test_end_dates.py's subject).
    ended, started = changes
    assert ended == ["US", "Sale ended", "$4.99 → $9.99", ""]
    assert started[:3] == ["US", "Sale started", "$9.99 → $4.99"]
    assert re.fullmatch(
        r"-50% new historical low( sale ends \d{4}-\d\d-\d\d \d\d:\d\d UTC)?", started[3]
    )
    await no_injection(page, dialogs)
    await screenshots.take(page, "app-desktop")

    # The app whose name is a script: shown as text, nothing ran.
    await page.goto(f"{base}/apps/20")
    assert await page.inner_text("#app-name") == SCRIPT_NAME
    assert await page.title() == f"{SCRIPT_NAME} · steamprice"
    await no_injection(page, dialogs)
    await page.goto(f"{base}/apps/30")
    assert await page.inner_text("#app-name") == IMG_NAME
    await no_injection(page, dialogs)
    await screenshots.take(page, "app-script-name")

    # /changes: newest first, filters by kind and region, paged by cursor.
    await page.goto(f"{base}/changes")
    listed = await page.locator("#changes tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].slice(1, 4).map(c => c.innerText.trim()))"
    )
    assert listed[0] == [HALF_LIFE, "US", "Sale ended"]
    assert sorted(map(tuple, listed[1:])) == sorted(
        [
            (HALF_LIFE, "US", "Sale started"),
            (IMG_NAME, "GB", "Sale started"),
            (IMG_NAME, "US", "Price decreased"),
        ]
    )
    await no_injection(page, dialogs)
    await screenshots.take(page, "changes-desktop")
    await page.select_option("select[name=kind]", "discount_started")
    await page.select_option("select[name=cc]", "gb")
    await page.click("button[type=submit]")
    assert "kind=discount_started" in page.url and "cc=gb" in page.url
    assert await page.locator("#changes tbody tr").count() == 1
    assert "£15.99 → £11.99" in await page.inner_text("#changes")
    event_ids = "rows => rows.map(r => r.dataset.eventId)"
    everything = await page.goto(f"{base}/changes")
    assert everything is not None
    all_ids = await page.locator("#changes tbody tr").evaluate_all(event_ids)
    await page.goto(f"{base}/changes?per_page=3")
    newest = await page.locator("#changes tbody tr").evaluate_all(event_ids)
    await page.click("a[rel=next]")
    older = await page.locator("#changes tbody tr").evaluate_all(event_ids)
    assert (newest, older) == (all_ids[:3], all_ids[3:]) and len(all_ids) == 4
    assert await page.locator("a[rel=next]").count() == 0

    # A phone: no sideways scrolling, the list as cards, the chart within the screen.
    phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    small = await phone.new_page()
    await small.goto(f"{base}/prices")
    assert await overflow(small) == 0
    assert not await small.locator("#prices thead").is_visible()
    card = small.locator("#prices tbody tr[data-app-id='10'] td.low")
    assert (await card.inner_text()).strip() == "$4.99"
    # Each cell of a card is labelled by CSS (the table head is hidden on a phone).
    label = await card.evaluate("td => getComputedStyle(td, '::before').content")
    assert label == '"Historical low"'
    box = await card.bounding_box()
    assert box is not None and box["width"] > 300  # one cell per line, the card's full width
    await screenshots.take(small, "prices-phone")
    await small.goto(f"{base}/apps/10")
    assert await overflow(small) == 0
    assert 300 < (await small.evaluate(CHART_JS, "us"))["width"] <= PHONE["width"]
    await screenshots.take(small, "app-phone")
    await small.goto(f"{base}/changes")
    assert await overflow(small) == 0
    await screenshots.take(small, "changes-phone")
    await phone.close()
    await context.close()

    # The JSON twins carry the contract's keys.
    status, body, headers = await get(f"{base}/api/apps/10")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["app_id"] == 10 and doc["name"] == HALF_LIFE
    us_json = next(r for r in doc["regions"] if r["cc"] == "us")
    assert {k: us_json[k] for k in ("status", "currency", "initial_price", "final_price")} == {
        "status": "priced", "currency": "USD", "initial_price": 999, "final_price": 999,
    }  # fmt: skip
    assert us_json["discount_percent"] == 0 and us_json["discount_ends_at"] is None
    assert us_json["historical_low"] == 499 and us_json["at_historical_low"] is False
    assert us_json["observed_at"].endswith("+00:00")
    assert [h["final_price"] for h in us_json["history"]] == [999, 499, 999]
    assert [c["kind"] for c in doc["changes"]] == ["discount_ended", "discount_started"]
    status, body, _ = await get(f"{base}/api/prices?cc=gb&sort=price")
    assert status == 200
    assert [(i["app_id"], i["final_price"]) for i in json.loads(body)["items"]] == [
        (20, 399), (10, 719), (30, 1199)
    ]  # fmt: skip
    status, body, _ = await get(f"{base}/api/changes?kind=discount_ended")
    assert [(i["app_id"], i["cc"]) for i in json.loads(body)["items"]] == [(10, "us")]

    # Unknown ids and bad parameters: 404 / 400 with a short message; writes: 405.
    bad = {
        "/apps/999": 404, "/apps/abc": 404, "/api/apps/999": 404, "/apps/0": 404,
        "/prices?sort=cheapest": 400, "/prices?page=0": 400, "/prices?min_discount=101": 400,
        "/prices?cc=usa": 400, "/prices?at_low=maybe": 400, "/prices?q=" + "x" * 101: 400,
        "/api/prices?per_page=1000": 400, "/prices?page=202": 400, "/changes?kind=sale": 400,
        "/changes?before=yesterday": 400, "/api/changes?app=-1": 400,
    }  # fmt: skip
    bodies = {}
    for path, want in bad.items():
        status, body, _ = await get(base + path)
        assert status == want, (path, status, body[:300])
        assert "Traceback" not in body and len(body) < 20_000
        bodies[path] = body
    assert "app 999 is not tracked" in bodies["/apps/999"]
    assert json.loads(bodies["/api/apps/999"]) == {
        "error": "not found", "detail": "app 999 is not tracked"
    }  # fmt: skip
    assert "sort must be one of" in bodies["/prices?sort=cheapest"]
    for path in ("/prices", "/apps/10", "/changes", "/api/prices", "/api/apps/10"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert (await get(base + path, method))[0] == 405, (method, path)

    # No secret on any page; no traceback in the worker's log.
    pages = {
        p: (await get(base + p))[1] for p in ("/prices", "/apps/10", "/changes", "/api/apps/10")
    }
    assert leaks(pages, [SECRET]) == []
    assert "Traceback" not in worker.log()
    print("\n".join(f"artifact: {p}" for p in screenshots.paths))


async def timed_get(url: str) -> tuple[int, str, float]:
    started = time.monotonic()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s,
        s.get(url) as r,
    ):
        return r.status, await r.text(), time.monotonic() - started


async def test_pages_say_database_unavailable_while_mysql_is_stuck_or_down(
    pipeline: Pipeline, steam: FakeSteam, browser: Any, screenshots: Screenshots, tmp_path: Any
) -> None:
    mariadb = PrivateMariaDB(tmp_path)
    await mariadb.start()
    try:
        steam.set_price(10, "us", 999, 999, 0)
        worker = pipeline.worker(MYSQL_PORT=str(mariadb.port), SEED_DEDUPE_SECONDS="0")
        await worker.start()
        await pipeline.cli("seed", "10")

        async def listed() -> bool:
            status, body, _ = await timed_get(f"{worker.url}/prices")
            return status == 200 and "App 10" in body

        await wait_for("app 10 on /prices", listed, timeout=90)

        # Stuck (SIGSTOP): connections hang; the page must give up on its own, quickly.
        assert mariadb.proc is not None
        mariadb.proc.send_signal(signal.SIGSTOP)
        try:
            for path in ("/prices", "/apps/10", "/changes", "/api/prices"):
                status, body, took = await timed_get(worker.url + path)
                assert status == 503, (path, status, body[:300])
                assert took < 6.0, (path, took)
                assert "atabase unavailable" in body
            health = await worker.health()  # the rest of the worker serves on
            assert health is not None
            context = await browser.new_context(viewport=DESKTOP)
            page = await context.new_page()
            response = await page.goto(f"{worker.url}/prices")
            assert response.status == 503
            assert (await page.inner_text("h1")) == "Database unavailable"
            await screenshots.take(page, "prices-database-unavailable")
            await context.close()
        finally:
            mariadb.proc.send_signal(signal.SIGCONT)
        await wait_for("/prices back after SIGCONT", listed, timeout=30)

        # Dead (SIGKILL): refused at once, then back when it is.
        await mariadb.kill()
        status, body, took = await timed_get(f"{worker.url}/apps/10")
        assert status == 503 and took < 6.0 and "Traceback" not in body
        await mariadb.start()
        await wait_for("/prices back after a restart", listed, timeout=60)
        assert "Traceback" not in worker.log()
        print("\n".join(f"artifact: {p}" for p in screenshots.paths))
    finally:
        for w in pipeline.workers:
            await w.stop()
        await mariadb.stop()
