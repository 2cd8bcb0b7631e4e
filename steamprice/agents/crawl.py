"""Crawl agent: batches due apps into paced ``appdetails`` requests, one per region."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from steamprice.app import app, settings
from steamprice.models import RawPrice, ScheduleCommand
from steamprice.schedule import FAILED
from steamprice.services import metrics, store
from steamprice.steam import StoreError
from steamprice.topics import crawl_requests_topic, prices_raw_topic, schedule_topic

logger = logging.getLogger(__name__)


@app.agent(crawl_requests_topic, name="crawl")
async def crawl(stream: Any) -> None:
    """Stateless, so batching with ``take`` is safe: offsets are acked after each batch."""
    await store.maybe_start()
    async for requests in stream.take(
        settings.steam_batch_size, within=settings.steam_batch_wait_seconds
    ):
        app_ids = sorted({r.app_id for r in requests})
        metrics.batch_size.labels("crawl").observe(len(app_ids))
        started = time.monotonic()
        missing: dict[int, str] = {}
        for cc in settings.steam_countries:
            fetched_at = datetime.now(UTC)
            try:
                entries = await store.fetch_batch(app_ids, cc)
            except StoreError as exc:
                logger.warning("Pricing %d apps in %s failed: %s", len(app_ids), cc, exc)
                entries = {}
                reason = f"{cc}: {exc}"
            else:
                reason = f"{cc}: no answer for this app"
            for app_id in app_ids:
                entry = entries.get(app_id)
                if entry is None:
                    missing.setdefault(app_id, reason)
                    continue
                await prices_raw_topic.send(
                    key=app_id,
                    value=RawPrice(app_id=app_id, cc=cc, fetched_at=fetched_at, entry=entry),
                )
            metrics.kafka_messages.labels("prices-raw", "produced").inc(len(entries))
        for app_id, why in missing.items():
            await schedule_topic.send(
                key=app_id,
                value=ScheduleCommand(app_id=app_id, op=FAILED, at=datetime.now(UTC), reason=why),
            )
        metrics.games_processed.labels("crawl", "ok").inc(len(app_ids) - len(missing))
        metrics.games_processed.labels("crawl", "error").inc(len(missing))
        metrics.task_duration_seconds.labels("crawl").observe(time.monotonic() - started)
        logger.info(
            "Crawled %d apps in %d regions (%d failed) in %.1f s",
            len(app_ids),
            len(settings.steam_countries),
            len(missing),
            time.monotonic() - started,
        )
