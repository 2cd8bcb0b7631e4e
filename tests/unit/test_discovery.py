"""Paging the app list and the change poller's cursor."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from steamprice.discovery import POLL_OVERLAP_SECONDS, ChangeCursor, iter_app_list
from steamprice.steam import AppListEntry, AppListPage, StoreError


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
