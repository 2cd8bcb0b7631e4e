"""Change agent: normalises each raw batch and compares every observation with its last state.

One record at a time, no concurrency: a record holds the apps of one partition only (the
crawler sends it there), so every table read and write of the batch stays in the partition
that owns the key (see ``steamprice.batches``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from functools import partial
from typing import Any

from steamprice.app import app
from steamprice.batches import BadRecord, ObservedBatch, RawBatch, observed_record, read_raw
from steamprice.models import PriceChange
from steamprice.pricing import apply_stored, normalize
from steamprice.services import metrics
from steamprice.tables import price_history_table, price_key, price_state_table
from steamprice.topics import price_changes_topic, prices_normalized_topic, prices_raw_topic

logger = logging.getLogger(__name__)


def detect(batch: RawBatch) -> tuple[ObservedBatch, list[PriceChange]]:
    """Normalise and apply every entry of ``batch`` to the tables (inside the stream loop)."""
    observations, news, events = [], [], []
    statuses: Counter[str] = Counter()
    stamp = batch.fetched_at.isoformat()
    for app_id, entry in batch.entries:
        obs, problem = normalize(app_id, batch.cc, batch.fetched_at, entry, stamp)
        if problem:
            # Still applied as ``unknown``: the app was answered, just oddly.
            metrics.bad_input.labels("steam", "malformed_entry").inc()
            logger.warning(
                "App %d in %s: odd Steam entry (%s): %.200s", app_id, obs.cc, problem, entry
            )
        key = price_key(app_id, obs.cc)
        applied = apply_stored(
            price_state_table.get(key), obs, partial(price_history_table.get, key)
        )
        if applied.history is not None:
            price_history_table[key] = applied.history
        if applied.state is not None:
            price_state_table[key] = applied.state
        observations.append(obs)
        news.append(applied.news)
        events.extend(applied.events)
        statuses[obs.status] += 1
    for status, n in statuses.items():
        metrics.games_processed.labels("normalize", status).inc(n)
    check_id = observations[0].obs_id if observations else ""
    return ObservedBatch(batch.cc, batch.fetched_at, check_id, observations, news), events


@app.agent(prices_raw_topic, name="changes")
async def detect_changes(stream: Any) -> None:
    """prices-raw -> prices-normalized (same partition) and one price-changes record per event."""
    async for event in stream.events():
        started = time.monotonic()
        try:
            batch = read_raw(event.value)
        except BadRecord as exc:
            metrics.bad_input.labels("prices-raw", "invalid").inc()
            logger.error("Skipped a prices-raw record at %s: %s", event.message.tp, exc)
            continue
        observed, events = detect(batch)
        if observed.observations:
            await prices_normalized_topic.send(
                value=observed_record(observed), partition=event.message.partition
            )
        for change in events:
            await price_changes_topic.send(key=change.app_id, value=change)
            metrics.price_changes.labels(change.kind).inc()
        metrics.batch_size.labels("changes").observe(len(observed.observations))
        metrics.task_duration_seconds.labels("changes").observe(time.monotonic() - started)
