"""MySQL sink agents: batched, idempotent writes that wait out outages."""

from __future__ import annotations

import logging
import time
from typing import Any

from steamprice.app import app, settings
from steamprice.services import database, metrics
from steamprice.storage import (
    INSERT_APPS,
    INSERT_PRICE_CHANGES,
    UPSERT_PRICE_CURRENT,
    app_rows,
    price_change_rows,
    price_current_rows,
)
from steamprice.topics import price_changes_topic, prices_normalized_topic

logger = logging.getLogger(__name__)


@app.agent(prices_normalized_topic, name="sink-price-current")
async def sink_price_current(stream: Any) -> None:
    """``apps`` + ``price_current``; offsets are acked only after the batch commits."""
    await database.maybe_start()
    async for batch in stream.take(settings.sink_batch_size, within=settings.sink_batch_seconds):
        started = time.monotonic()
        rows = price_current_rows(batch)
        apps = app_rows(o.app_id for o in batch)
        await database.write("price_current", [(INSERT_APPS, apps), (UPSERT_PRICE_CURRENT, rows)])
        metrics.sink_rows.labels("price_current").inc(len(rows))
        metrics.batch_size.labels("sink_price_current").observe(len(batch))
        metrics.task_duration_seconds.labels("sink_price_current").observe(
            time.monotonic() - started
        )


@app.agent(price_changes_topic, name="sink-price-changes")
async def sink_price_changes(stream: Any) -> None:
    """``price_changes``: keyed by event_id, so a redelivered event inserts nothing."""
    await database.maybe_start()
    async for batch in stream.take(settings.sink_batch_size, within=settings.sink_batch_seconds):
        rows = price_change_rows(batch)
        apps = app_rows(e.app_id for e in batch)
        _, inserted = await database.write(
            "price_changes", [(INSERT_APPS, apps), (INSERT_PRICE_CHANGES, rows)]
        )
        metrics.sink_rows.labels("price_changes").inc(max(inserted, 0))
        logger.info("Recorded %d price changes (%d new)", len(rows), inserted)
