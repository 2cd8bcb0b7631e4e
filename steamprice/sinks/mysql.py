"""MySQL sink agents: batched, idempotent writes that wait out outages.

Each batch is acknowledged only after its transaction committed: ``noack_take`` hands over the
events, unacknowledged (plain ``take`` acknowledges a batch even when the code that consumed it
raised or was cancelled, so a batch abandoned at shutdown would be committed, unwritten).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from steamprice.app import app, settings
from steamprice.database import DatabaseStopping
from steamprice.services import database, metrics
from steamprice.storage import write_changes, write_observations
from steamprice.topics import price_changes_topic, prices_normalized_topic

logger = logging.getLogger(__name__)


@app.agent(prices_normalized_topic, name="sink-price-current")
async def sink_price_current(stream: Any) -> None:
    """``apps``, ``price_history`` and ``price_current`` from every observation."""
    await database.maybe_start()
    async for events in stream.noack_take(settings.sink_batch_size, settings.sink_batch_seconds):
        started = time.monotonic()
        try:
            outcome = await write_observations(database, [e.value for e in events])
        except DatabaseStopping:
            logger.info("Stopping: %d observations unwritten, Kafka redelivers them", len(events))
            return
        for event in events:
            await stream.ack(event)
        metrics.batch_size.labels("sink_price_current").observe(len(events))
        metrics.task_duration_seconds.labels("sink_price_current").observe(
            time.monotonic() - started
        )
        logger.info(
            "Stored %d observations: %d current prices, %d history rows, %d rejected",
            len(events),
            outcome.written["price_current"],
            outcome.written["price_history"],
            outcome.rejected,
        )


@app.agent(price_changes_topic, name="sink-price-changes")
async def sink_price_changes(stream: Any) -> None:
    """``price_changes``: keyed by event_id, so a redelivered event inserts nothing."""
    await database.maybe_start()
    async for events in stream.noack_take(settings.sink_batch_size, settings.sink_batch_seconds):
        started = time.monotonic()
        try:
            outcome = await write_changes(database, [e.value for e in events])
        except DatabaseStopping:
            logger.info("Stopping: %d changes unwritten, Kafka redelivers them", len(events))
            return
        for event in events:
            await stream.ack(event)
        metrics.batch_size.labels("sink_price_changes").observe(len(events))
        metrics.task_duration_seconds.labels("sink_price_changes").observe(
            time.monotonic() - started
        )
        logger.info(
            "Recorded %d price changes (%d new, %d rejected)",
            len(events),
            outcome.written["price_changes"],
            outcome.rejected,
        )
