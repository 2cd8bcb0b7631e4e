"""SteamSpy enrichment of the ``apps`` table: name, developer, publisher, owners, ccu, tags.

A background service on the leader only (one IP, one SteamSpy budget): it looks for ``apps`` rows
without tags, asks SteamSpy about each at most once a second and upserts what it says. It never
touches prices and never holds up pricing: its own loop, its own pacer, its own failures. An app
SteamSpy cannot answer for is skipped for an hour (in memory) and tried again later.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import aiomysql
from mode import Service

from steamprice.app import app, settings
from steamprice.services import database, metrics, store
from steamprice.steam import StoreError
from steamprice.steamspy import SELECT_UNENRICHED, UPSERT_APP_DETAILS, details_row

logger = logging.getLogger(__name__)

BATCH = 50
# How long to wait when every app is described (or this worker is not the leader); the look is
# a scan of ``apps``, so not too often.
IDLE_SECONDS = max(5.0, 3 * settings.schedule_tick_seconds)
SKIP_SECONDS = 3600.0


class SteamSpyEnricher(Service):
    """Fills the ``apps`` table's descriptive columns from SteamSpy, one app per second."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._skip_until: dict[int, float] = {}

    async def _unenriched(self) -> list[int]:
        now = time.monotonic()
        self._skip_until = {a: t for a, t in self._skip_until.items() if t > now}

        async def work(cur: aiomysql.Cursor) -> list[int]:
            await cur.execute(SELECT_UNENRICHED, (BATCH + len(self._skip_until),))
            return [int(row[0]) for row in await cur.fetchall()]

        ids = await database.transaction("apps_enrich", work)
        return [a for a in ids if a not in self._skip_until][:BATCH]

    async def _enrich(self, app_id: int) -> None:
        try:
            details = await store.steamspy_details(app_id)
        except StoreError as exc:
            self._skip_until[app_id] = time.monotonic() + SKIP_SECONDS
            metrics.games_processed.labels("enrich", "error").inc()
            logger.warning("SteamSpy has no usable answer for app %d (%s); later", app_id, exc)
            return
        await database.write("apps", [(UPSERT_APP_DETAILS, [details_row(details)])])
        metrics.sink_rows.labels("apps").inc()
        metrics.games_processed.labels("enrich", "known" if details.known else "unknown").inc()

    @Service.task
    async def _run(self) -> None:
        await store.maybe_start()
        await database.maybe_start()
        while not self.should_stop:
            ids = await self._unenriched() if app.is_leader() else []
            if not ids:
                await self.sleep(IDLE_SECONDS)
                continue
            for app_id in ids:
                if self.should_stop or not app.is_leader():
                    break
                await self._enrich(app_id)
            logger.info("SteamSpy: enriched up to %d apps", len(ids))


if settings.enable_steamspy:
    enricher = SteamSpyEnricher()
    app.service(enricher)  # type: ignore[arg-type]
