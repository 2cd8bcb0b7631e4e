"""Change agent: normalises each raw batch and compares every observation with its last state.

One record at a time, no concurrency: a record holds the apps of one partition only (the
crawler sends it there), so every table read and write of the batch stays in the partition
that owns the key (see ``steamprice.batches``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from functools import partial
from time import monotonic
from typing import Any

from steamprice.app import app, settings
from steamprice.batches import BadRecord, ObservedBatch, RawBatch, observed_record, read_raw
from steamprice.enddates import Ask, asks_record, discounted_offer
from steamprice.models import Observation, PriceChange
from steamprice.pricing import apply_stored, current_since, observation_id, observed, unchanged
from steamprice.services import metrics
from steamprice.steam import PRICED, parse_entry
from steamprice.tables import (
    partition_reader,
    partition_writer,
    price_history_table,
    price_key,
    price_state_table,
)
from steamprice.topics import (
    end_date_asks_topic,
    price_changes_topic,
    prices_normalized_topic,
    prices_raw_topic,
)

logger = logging.getLogger(__name__)

# End dates are asked only while GetItems has a pace (0 switches them off).
ENDS_ENABLED = settings.steam_getitems_max_requests_per_minute > 0
# The longest a batch holds the event loop before the other tasks get a turn (checked every
# YIELD_CHECK entries). A first sweep's batch of 100 takes ~15 ms, and the MySQL sink needs a
# turn for each step of a transaction (a query sent, an answer read): with a turn only per batch
# it fell behind by thousands of records during a first sweep and caught up only at the end,
# while the worker waited on MySQL. A turn every 10 entries kept it up, but cost a re-sweep
# (~2 ms a batch) ten turns of the loop per batch, each a poll of its sockets.
YIELD_SECONDS = 0.0015
YIELD_CHECK = 10


def rewrite(key: str, stored: Any, write_state: Any, write_history: Any, read_history: Any) -> None:
    """Write a redelivered observation's state (and its key's history) again, as they are.

    A record is redelivered after a crash or a rebalance, and its table writes may have died
    with the worker: a record's table writes land in the local RocksDB database together, then
    wait in the producer buffer for Kafka (``kafka.ProducerBuffer``), and a restart from that
    database reads the changelog only past what was sent. Its state is then ahead of the changelog,
    which standbys and the next owner of the partition read, and they would take the
    observation for a change again (a second event under another id). Written again, the
    values reach the changelog; it costs a write per redelivered change, only after a fault.
    """
    write_state[key] = stored
    history = read_history(key)
    if history is not None:
        write_history[key] = history


async def detect(
    batch: RawBatch, partition: int
) -> tuple[ObservedBatch, list[PriceChange], list[Ask]]:
    """Normalise and apply every entry of ``batch`` (read from ``partition``) to the tables.

    The observed batch holds the news only (what the sink stores) and every app checked. An
    entry that leaves its stored state as it is (:func:`pricing.unchanged`: the same price,
    fetched after the state) costs a parse and a read, nothing more; any other goes the whole
    way (:func:`pricing.apply_stored`), as does a discounted price while end dates are asked.
    Also returns the batch's discounted observations of the current price: the end-date agent
    decides which of them GetItems is asked about. Lets the other tasks of the worker run every
    :data:`YIELD_SECONDS` (see there).
    """
    news: list[Observation] = []
    events: list[PriceChange] = []
    asks: list[Ask] = []
    statuses: Counter[str] = Counter()
    cc, fetched_at, entries = batch.cc, batch.fetched_at, batch.entries
    stamp = fetched_at.isoformat()
    write_state = partition_writer(price_state_table, partition)
    write_history = partition_writer(price_history_table, partition)
    read_state = partition_reader(price_state_table, partition, write_state)
    read_history = partition_reader(price_history_table, partition, write_history)
    turn_ends = monotonic() + YIELD_SECONDS
    for n, (app_id, entry) in enumerate(entries, 1):
        if n % YIELD_CHECK == 0 and monotonic() >= turn_ends:
            await asyncio.sleep(0)
            turn_ends = monotonic() + YIELD_SECONDS
        parsed = parse_entry(entry)
        statuses[parsed.status] += 1
        if parsed.problem:
            # Still applied as ``unknown``: the app was answered, just oddly.
            metrics.bad_input.labels("steam", "malformed_entry").inc()
            logger.warning(
                "App %d in %s: odd Steam entry (%s): %.200s", app_id, cc, parsed.problem, entry
            )
        key = price_key(app_id, cc)
        stored = read_state(key)
        offer = (
            discounted_offer(app_id, parsed.initial, parsed.final, parsed.discount_percent)
            if ENDS_ENABLED and parsed.status == PRICED
            else None
        )
        if offer is None and type(stored) is dict and unchanged(stored, parsed, fetched_at):
            continue
        obs = observed(app_id, cc, fetched_at, parsed, stamp)
        applied = apply_stored(stored, obs, partial(read_history, key))
        if applied.history is not None:
            write_history[key] = applied.history
        if applied.state is not None:
            write_state[key] = applied.state
        elif applied.redelivered:
            rewrite(key, stored, write_state, write_history, read_history)
        if offer is not None:
            since = current_since(stored, applied, obs)
            if since is not None:
                reseeded = app_id in batch.reseeded
                asks.append(
                    Ask(
                        app_id,
                        obs.cc,
                        offer.initial,
                        offer.final,
                        since,
                        obs.observed_at,
                        obs.obs_id,
                        reseeded,
                    )
                )
        if applied.news:
            news.append(obs)
        events.extend(applied.events)
    read_state.counted()
    read_history.counted()
    write_state.counted()
    write_history.counted()
    for status, n in statuses.items():
        metrics.games_processed.labels("normalize", status).inc(n)
    # The batch's id: its first app's observation id (stable, so a redelivery is checked once).
    check_id = observation_id(entries[0][0], cc, fetched_at, stamp) if entries else ""
    checked = [app_id for app_id, _ in entries]
    observed_batch = ObservedBatch(cc, fetched_at, check_id, news, [True] * len(news), checked)
    return observed_batch, events, asks


@app.agent(prices_raw_topic, name="changes")
async def detect_changes(stream: Any) -> None:
    """prices-raw -> prices-normalized (same partition) and one price-changes record per event."""
    async for event in stream.events():
        started = monotonic()
        try:
            batch = read_raw(event.value)
        except BadRecord as exc:
            metrics.bad_input.labels("prices-raw", "invalid").inc()
            logger.error("Skipped a prices-raw record at %s: %s", event.message.tp, exc)
            continue
        observed, events, asks = await detect(batch, event.message.partition)
        if batch.entries:
            await prices_normalized_topic.send(
                value=observed_record(observed), partition=event.message.partition
            )
        if asks:
            # Same partition: the asks of one app stay in order. Never awaited beyond the send:
            # GetItems' trouble cannot reach this loop, which carries prices and alerts.
            await end_date_asks_topic.send(
                value=asks_record(batch.cc, asks), partition=event.message.partition
            )
        for change in events:
            await price_changes_topic.send(key=change.app_id, value=change)
            metrics.price_changes.labels(change.kind).inc()
        metrics.batch_size.labels("changes").observe(len(batch.entries))
        metrics.task_duration_seconds.labels("changes").observe(monotonic() - started)
