"""MySQL sink agents: batched, idempotent writes that wait out outages.

Each batch is acknowledged only after its transaction committed (``steamprice.batching``): a
batch abandoned at shutdown (``DatabaseStopping``, or cancelled) is left to Kafka to redeliver.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from steamprice.app import app, settings
from steamprice.batches import BadRecord, ObservedBatch, read_observed
from steamprice.batching import Batcher
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


async def _write_batches(
    stream: Any,
    task: str,
    write: Callable[[Any, list[Any]], Awaitable[Any]],
    report: Callable[[int, Any], None],
) -> None:
    """Write each batch in one transaction, ack its events once committed, ``report`` it."""
    await database.maybe_start()

    async def process(values: Sequence[Any]) -> None:
        started = time.monotonic()
        outcome = await write(database, list(values))
        metrics.batch_size.labels(task).observe(len(values))
        metrics.task_duration_seconds.labels(task).observe(time.monotonic() - started)
        report(len(values), outcome)

    batcher = Batcher(
        stream.noack(),
        settings.sink_batch_size,
        settings.sink_batch_seconds,
        process,
        ack_errors=False,
        stop_on=(DatabaseStopping,),
        name=task,
    )
    await batcher.run()


async def _write_records(db: Database, values: Sequence[Any]) -> SinkOutcome:
    batches: list[ObservedBatch] = []
    for value in values:
        try:
            batches.append(read_observed(value, news_only=True))
        except BadRecord as exc:
            metrics.bad_input.labels("prices-normalized", "invalid").inc()
            logger.error("Skipped a prices-normalized record: %s", exc)
    return await write_batches(db, batches)


@app.agent(prices_normalized_topic, name="sink-price-current")
async def sink_price_current(stream: Any) -> None:
    """``price_checks`` per record; ``apps``, ``price_history``, ``price_current`` from news."""

    def report(n: int, outcome: Any) -> None:
        logger.info(
            "Stored %d records: %d checks, %d current prices, %d history rows, %d rejected",
            n,
            outcome.written["price_checks"],
            outcome.written["price_current"],
            outcome.written["price_history"],
            outcome.rejected,
        )

    await _write_batches(stream, "sink_price_current", _write_records, report)


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

    def report(n: int, outcome: Any) -> None:
        logger.info(
            "Recorded %d price changes (%d new, %d rejected)",
            n,
            outcome.written["price_changes"],
            outcome.rejected,
        )

    await _write_batches(stream, "sink_price_changes", write_changes, report)
