"""Change-driven re-pricing: the leader asks the app list which apps changed since its last look.

Each listed app goes to the scheduler as ``changed`` with its ``price_change_number`` (in records
of one partition each); the scheduler re-prices it ahead of the sweep only if the number moved
(see steamprice.discovery for what the number is believed to mean and why the sweep stays the
safety net).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from steamprice.app import app, settings
from steamprice.discovery import ChangeCursor, iter_app_list
from steamprice.models import ScheduleCommand
from steamprice.schedule import CHANGED
from steamprice.services import metrics, store
from steamprice.steam import StoreError
from steamprice.topics import send_schedule

logger = logging.getLogger(__name__)

# The first poll looks one recrawl interval back: what the last sweep may have missed.
cursor = ChangeCursor(since=int(time.time() - settings.recrawl_interval_seconds))


async def poll_changed_apps() -> int:
    """One poll: every app modified since the cursor, sent to the scheduler; returns the count."""
    key = settings.steam_api_key.get()
    await store.maybe_start()
    started = time.time()
    listed = 0
    async for page in iter_app_list(store, key, types=settings.steam_app_types, since=cursor.since):
        at = datetime.now(UTC)
        # One schedule record per partition (and up to MAX_RECORD_APPS apps) of the page.
        await send_schedule(
            ScheduleCommand(
                entry.app_id,
                CHANGED,
                at,
                change_number=entry.price_change_number,
                modified_at=datetime.fromtimestamp(entry.last_modified, UTC),
            )
            for entry in page.apps
        )
        listed += len(page.apps)
    cursor.advance(started)
    return listed


if settings.discovery_interval_seconds > 0:

    @app.timer(  # type: ignore[untyped-decorator]
        interval=settings.discovery_interval_seconds, on_leader=True
    )
    async def change_poller() -> None:
        if not settings.steam_api_key:
            return  # discovery needs a Web API key; the sweep alone keeps prices fresh
        try:
            listed = await poll_changed_apps()
        except StoreError as exc:
            # The cursor did not move: the next poll covers this one's window too.
            metrics.games_processed.labels("discovery", "error").inc()
            logger.warning(
                "App-list poll failed (%s); the next poll starts from the same point", exc
            )
            return
        metrics.games_processed.labels("discovery", "listed").inc(listed)
        logger.info("App list: %d apps modified since the last poll", listed)
