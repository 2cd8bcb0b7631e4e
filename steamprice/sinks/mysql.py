"""MySQL sink agents: batched, idempotent writes that wait out outages.

Each batch is acknowledged only after its transaction committed (``steamprice.batching``): a
batch abandoned at shutdown (``DatabaseStopping``, or cancelled) is left to Kafka to redeliver.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from steamprice.app import app, settings
from steamprice.batching import Batcher
from steamprice.database import DatabaseStopping
from steamprice.services import database, metrics
from steamprice.storage import write_changes, write_observations
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


@app.agent(prices_normalized_topic, name="sink-price-current")
async def sink_price_current(stream: Any) -> None:
    """``apps``, ``price_history`` and ``price_current`` from every observation."""

    def report(n: int, outcome: Any) -> None:
        logger.info(
            "Stored %d observations: %d current prices, %d history rows, %d rejected",
            n,
            outcome.written["price_current"],
            outcome.written["price_history"],
            outcome.rejected,
        )

    await _write_batches(stream, "sink_price_current", write_observations, report)


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
