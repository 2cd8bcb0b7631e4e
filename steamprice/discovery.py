"""Catalog discovery and change detection through ``IStoreService/GetAppList/v1`` (no Faust).

``steamprice seed --all`` pages the whole list (``last_appid`` cursor; the last page has no
``have_more_results``). The worker's leader polls the same endpoint every
``DISCOVERY_INTERVAL_SECONDS`` with ``if_modified_since`` and hands each listed app's
``price_change_number`` to the scheduler, which re-prices an app ahead of the sweep when the
number moved.

What ``price_change_number`` means is undocumented. Real lists show many apps sharing one value
(10 and 20 both at 15351989) and 0 on others: it looks like a store-wide counter stamped on an
app when its price data last changed. The fake store (``tests/support/fakes/steam.py``) implements
exactly that assumption: a real price change takes the next number and sets ``last_modified`` to
the current time, so ``if_modified_since`` finds exactly the re-priced apps; the crawler tests
check that this path re-prices a changed app within one poll and leaves the others alone.

Why the design is safe if the assumption is wrong: the change path only *adds* early re-prices.
Every tracked app is still re-priced every ``RECRAWL_INTERVAL_SECONDS`` by the sweep, whatever
the app list says, so a change Steam does not announce (a sale may well be a discount object that
never moves the number) is caught at the next sweep, as before. If the number moves too often,
each early re-price pushes that app's next sweep back by a whole interval (the budget is not
spent twice), and the dispatcher gives changed apps at most half of a tick's budget while sweep
apps are overdue, so the sweep cannot starve. Repeated polls (the cursor overlaps, a restarted
leader re-reads the last interval) are harmless: an unchanged number is ignored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from steamprice.steam import APP_LIST_PAGE_SIZE, AppListPage, app_list_params

# The next poll starts this far before the last one began: clocks and Steam's own bookkeeping
# need not agree to the second, and a repeat costs nothing.
POLL_OVERLAP_SECONDS = 120


class AppListSource(Protocol):
    async def app_list_page(self, params: Mapping[str, str]) -> AppListPage: ...


async def iter_app_list(
    source: AppListSource,
    key: str,
    *,
    types: Sequence[str],
    since: int | None = None,
    page_size: int = APP_LIST_PAGE_SIZE,
) -> AsyncIterator[AppListPage]:
    """Every page of the app list, in appid order (raises StoreError if a page cannot be had)."""
    last = 0
    while True:
        params = app_list_params(
            key, last, types=types, if_modified_since=since, max_results=page_size
        )
        page = await source.app_list_page(params)
        yield page
        if page.last_appid is None or page.last_appid <= last:
            return  # the last page, or a cursor that does not advance (never loop forever)
        last = page.last_appid


@dataclass
class ChangeCursor:
    """Where the next ``if_modified_since`` starts; moved only after a complete poll.

    Kept in memory: a restarted leader starts one recrawl interval back, which re-reads what
    the last sweep may have missed; the scheduler ignores numbers it already has.
    """

    since: int

    def advance(self, poll_started: float) -> None:
        self.since = max(self.since, int(poll_started) - POLL_OVERLAP_SECONDS)
