"""Discord sink agent: queues price changes in the delivery ledger; the notifier posts them."""

from __future__ import annotations

import logging
from typing import Any

from steamprice.app import app, settings
from steamprice.database import DatabaseStopping
from steamprice.services import database, notifier
from steamprice.topics import price_changes_topic

logger = logging.getLogger(__name__)

# A sale wave arrives as a burst: one transaction queues a large batch.
DISCORD_BATCH = 500


@app.agent(price_changes_topic, name="sink-discord")
async def sink_discord(stream: Any) -> None:
    """Acks a batch only once every change in it is committed to the ledger (pending/skipped).

    Posting happens later, in the notifier's sender, so Discord's rate limits never hold the
    stream, and a redelivered change finds its ledger row and is not queued twice.
    """
    await database.maybe_start()
    await notifier.maybe_start()
    # noack_take: a batch abandoned at shutdown must not be acknowledged (plain take would).
    async for events in stream.noack_take(DISCORD_BATCH, settings.sink_batch_seconds):
        try:
            await notifier.enqueue([e.value for e in events])
        except DatabaseStopping:
            logger.info("Stopping: %d changes not queued, Kafka redelivers them", len(events))
            return
        for event in events:
            await stream.ack(event)
