"""Paging the app list and the change poller's cursor."""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest

from steamprice.discovery import POLL_OVERLAP_SECONDS, ChangeCursor, iter_app_list
from steamprice.metrics import Metrics
from steamprice.settings import Secret, Settings
from steamprice.steam import AppListEntry, AppListPage, StoreError
from steamprice.store_client import StoreClient
from tests.support.fakes import FakeSteam


class Pages:
    """An app list source that serves canned pages and records the queries."""

    def __init__(self, *pages: AppListPage | StoreError) -> None:
        self.pages = list(pages)
        self.queries: list[dict[str, str]] = []

    async def app_list_page(self, params: Mapping[str, str]) -> AppListPage:
        self.queries.append(dict(params))
        page = self.pages.pop(0)
        if isinstance(page, StoreError):
            raise page
        return page


def entries(*ids: int) -> list[AppListEntry]:
    return [AppListEntry(i, f"App {i}", 1, 2) for i in ids]


async def test_pages_are_followed_by_last_appid_until_the_last_page() -> None:
    source = Pages(
        AppListPage(entries(10, 20), 20),
        AppListPage(entries(30, 40), 40),
        AppListPage(entries(50), None),
    )
    pages = [p async for p in iter_app_list(source, "k", types=("game", "dlc"), since=1234)]
    assert [a.app_id for p in pages for a in p.apps] == [10, 20, 30, 40, 50]
    assert [q["last_appid"] for q in source.queries] == ["0", "20", "40"]
    assert all(
        q["if_modified_since"] == "1234" and q["include_dlc"] == "true" for q in source.queries
    )


async def test_a_cursor_that_does_not_advance_ends_the_paging() -> None:
    source = Pages(AppListPage(entries(10), 10), AppListPage(entries(10), 10))
    pages = [p async for p in iter_app_list(source, "k", types=("game",))]
    assert len(pages) == 2 and len(source.queries) == 2


async def test_a_failed_page_raises() -> None:
    source = Pages(AppListPage(entries(10), 10), StoreError("banned", "HTTP 403"))
    with pytest.raises(StoreError):
        _ = [p async for p in iter_app_list(source, "k", types=("game",))]


def test_the_cursor_only_moves_forward_with_an_overlap() -> None:
    cursor = ChangeCursor(since=1000)
    cursor.advance(5000.7)
    assert cursor.since == 5000 - POLL_OVERLAP_SECONDS
    cursor.advance(10.0)  # a clock step back never rewinds it
    assert cursor.since == 5000 - POLL_OVERLAP_SECONDS


async def test_paging_the_fake_store_with_small_pages_finds_every_app_once() -> None:
    async with FakeSteam(rate_limit=None) as fake:
        for app_id in range(1, 251):
            fake.set_name(app_id, f"Game {app_id}")
        settings = Settings(steam_api_url=fake.url, steam_api_key=Secret("testkey"))
        client = StoreClient(settings, Metrics.create())
        await client.start()
        try:
            pages = [
                p async for p in iter_app_list(client, "testkey", types=("game",), page_size=100)
            ]
            ids = [a.app_id for p in pages for a in p.apps]
            assert ids == list(range(1, 251)) and len(pages) == 3
            assert pages[-1].last_appid is None

            # What the fake does with price_change_number (steamprice.discovery explains why the
            # design does not depend on it): a real price change takes the next store-wide
            # number and stamps last_modified; re-setting the same price changes nothing.
            cursor = int(time.time()) - 1
            fake.set_price(7, "us", 999, 999, 0)
            first = fake.app_meta(7)
            fake.set_price(7, "us", 999, 999, 0)
            assert fake.app_meta(7) == first
            fake.set_price(9, "us", 999, 499, 50)
            changed = [
                a
                async for p in iter_app_list(client, "testkey", types=("game",), since=cursor)
                for a in p.apps
            ]
            assert [a.app_id for a in changed] == [7, 9]
            assert changed[0].price_change_number < changed[1].price_change_number
            assert all(a.last_modified >= cursor for a in changed)
        finally:
            await client.stop()
