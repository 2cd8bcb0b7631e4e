"""Discord sink agent: queues price changes in the delivery ledger; the notifier posts them."""

from __future__ import annotations

from typing import Any

from steamprice.app import app, settings
from steamprice.batching import Batcher
from steamprice.database import DatabaseStopping
from steamprice.services import database, notifier
from steamprice.topics import price_changes_topic

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
    batcher = Batcher(
        stream.noack(),
        DISCORD_BATCH,
        settings.sink_batch_seconds,
        notifier.enqueue,
        ack_errors=False,
        stop_on=(DatabaseStopping,),
        name="sink-discord",
    )
    await batcher.run()
