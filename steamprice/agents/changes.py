"""Change agent: compares each observation with the last state of its (app, region)."""

from __future__ import annotations

from functools import partial
from typing import Any

from steamprice.app import app
from steamprice.pricing import apply_observation
from steamprice.schedule import record_success
from steamprice.services import metrics
from steamprice.tables import app_state_table, price_history_table, price_key, price_state_table
from steamprice.topics import price_changes_topic, prices_normalized_topic


@app.agent(prices_normalized_topic, name="changes")
async def detect_changes(stream: Any) -> None:
    """One message at a time (no concurrency, no take): table writes stay in their partition."""
    async for obs in stream:
        key = price_key(obs.app_id, obs.cc)
        applied = apply_observation(
            price_state_table.get(key), obs, partial(price_history_table.get, key)
        )
        if applied.history is not None:
            price_history_table[key] = applied.history
        if applied.state is not None:
            price_state_table[key] = applied.state
        healed = record_success(app_state_table.get(obs.app_id))
        if healed is not None:
            app_state_table[obs.app_id] = healed
        for event in applied.events:
            await price_changes_topic.send(key=event.app_id, value=event)
            metrics.price_changes.labels(event.kind).inc()
