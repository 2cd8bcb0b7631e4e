"""MySQL sink agents: batched, idempotent writes that wait out outages.

Each batch is acknowledged only after its transaction committed: ``noack_take`` hands over the
events, unacknowledged (plain ``take`` acknowledges a batch even when the code that consumed it
raised or was cancelled, so a batch abandoned at shutdown would be committed, unwritten).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from steamprice.app import app, settings
from steamprice.batches import BadRecord, ObservedBatch, read_observed
from steamprice.database import Database, DatabaseStopping
from steamprice.services import database, metrics
from steamprice.storage import (
    PRUNE_PRICE_CHECKS,
    SinkOutcome,
    utc_naive,
    write_batches,
    write_changes,
)
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


async def _write_records(db: Database, values: Sequence[Any]) -> SinkOutcome:
    batches: list[ObservedBatch] = []
    for value in values:
        try:
            batches.append(read_observed(value))
        except BadRecord as exc:
            metrics.bad_input.labels("prices-normalized", "invalid").inc()
            logger.error("Skipped a prices-normalized record: %s", exc)
    return await write_batches(db, batches)


@app.agent(prices_normalized_topic, name="sink-price-current")
async def sink_price_current(stream: Any) -> None:
    """``price_checks`` per record; ``apps``, ``price_history``, ``price_current`` from news."""
    batches = _committed_batches(stream, "sink_price_current", _write_records, "records")
    async for n, outcome in batches:
        logger.info(
            "Stored %d records: %d checks, %d current prices, %d history rows, %d rejected",
            n,
            outcome.written["price_checks"],
            outcome.written["price_current"],
            outcome.written["price_history"],
            outcome.rejected,
        )


@app.timer(interval=600.0)  # type: ignore[untyped-decorator]
async def prune_price_checks() -> None:
    """Forget checks older than two recrawl intervals (``steamprice status`` reads one)."""
    cutoff = datetime.now(UTC) - 2 * timedelta(seconds=settings.recrawl_interval_seconds)
    await database.maybe_start()
    try:
        deleted = await database.write(
            "price_checks", [(PRUNE_PRICE_CHECKS, [(utc_naive(cutoff),)])]
        )
    except DatabaseStopping:
        return
    if deleted[0]:
        logger.info("Pruned %d price checks older than %s", deleted[0], cutoff.isoformat())


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
