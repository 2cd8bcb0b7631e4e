"""MySQL sink agents: batched, idempotent writes that wait out outages.

Each batch is acknowledged only after its transaction committed: ``noack_take`` hands over the
events, unacknowledged (plain ``take`` acknowledges a batch even when the code that consumed it
raised or was cancelled, so a batch abandoned at shutdown would be committed, unwritten).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from steamprice.app import app, settings
from steamprice.database import DatabaseStopping
from steamprice.services import database, metrics
from steamprice.storage import write_changes, write_observations
from steamprice.topics import price_changes_topic, prices_normalized_topic

logger = logging.getLogger(__name__)


async def _committed_batches(
    stream: Any, task: str, write: Callable[[Any, list[Any]], Awaitable[Any]], what: str
) -> AsyncIterator[tuple[int, Any]]:
    """Write each batch, ack its events only once committed; yield (size, write outcome)."""
    await database.maybe_start()
    async for events in stream.noack_take(settings.sink_batch_size, settings.sink_batch_seconds):
        started = time.monotonic()
        try:
            outcome = await write(database, [e.value for e in events])
        except DatabaseStopping:
            logger.info("Stopping: %d %s unwritten, Kafka redelivers them", len(events), what)
            return
        for event in events:
            await stream.ack(event)
        metrics.batch_size.labels(task).observe(len(events))
        metrics.task_duration_seconds.labels(task).observe(time.monotonic() - started)
        yield len(events), outcome


@app.agent(prices_normalized_topic, name="sink-price-current")
async def sink_price_current(stream: Any) -> None:
    """``apps``, ``price_history`` and ``price_current`` from every observation."""
    batches = _committed_batches(stream, "sink_price_current", write_observations, "observations")
    async for n, outcome in batches:
        logger.info(
            "Stored %d observations: %d current prices, %d history rows, %d rejected",
            n,
            outcome.written["price_current"],
            outcome.written["price_history"],
            outcome.rejected,
        )


@app.agent(price_changes_topic, name="sink-price-changes")
async def sink_price_changes(stream: Any) -> None:
    """``price_changes``: keyed by event_id, so a redelivered event inserts nothing."""
    batches = _committed_batches(stream, "sink_price_changes", write_changes, "changes")
    async for n, outcome in batches:
        logger.info(
            "Recorded %d price changes (%d new, %d rejected)",
            n,
            outcome.written["price_changes"],
            outcome.rejected,
        )
