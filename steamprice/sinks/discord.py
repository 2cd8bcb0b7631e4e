"""Discord sink agent: hands batches of price changes to the notifier service."""

from __future__ import annotations

from typing import Any

from steamprice.app import app, settings
from steamprice.services import database, notifier
from steamprice.topics import price_changes_topic

# A sale wave arrives as a burst: a larger batch packs more embeds into each message.
DISCORD_BATCH = 200


@app.agent(price_changes_topic, name="sink-discord")
async def sink_discord(stream: Any) -> None:
    """Acks a batch only after every change in it is posted (or recorded as skipped)."""
    await database.maybe_start()
    await notifier.maybe_start()
    async for batch in stream.take(DISCORD_BATCH, within=settings.sink_batch_seconds):
        await notifier.notify(batch)
