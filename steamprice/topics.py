"""Every topic of the pipeline, declared once, and how batches reach their partitions.

What other programs read and write (``app-ids``, ``price-changes``, ``app-ids-failed``) is keyed
by app id (JSON integer), one record per app or event. The pipeline's own topics carry batches
(``schedule``, ``crawl-requests``, ``prices-raw``, ``prices-normalized``, ``end-date-asks``): each
record holds apps of one partition, sent to that partition explicitly (see ``steamprice.batches``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import faust

from steamprice.app import app, settings
from steamprice.batches import (
    by_partition,
    chunks,
    crawl_record,
    json_bytes,
    partition_for,
    schedule_record,
)
from steamprice.kafka import send_now
from steamprice.models import FailedInput, PriceChange, ScheduleCommand
from steamprice.seeding import send_seed_batches


def _keyed_by_app(short: str, value_type: type[faust.Record]) -> Any:
    """A topic keyed by the app id, created by the app with ``TOPIC_PARTITIONS`` partitions."""
    key_type: Any = int  # faust's stubs only admit models, bytes and str; int keys work
    return app.topic(
        settings.topic_name(short), key_type=key_type, value_type=value_type, internal=True
    )


# The seed topic takes raw bytes: a bare ``730`` or ``{"app_id": 730}``, with or without a key.
# Anything else must reach app-ids-failed, so nothing is decoded before the intake looks.
app_ids_topic = app.topic(
    settings.topic_name("app-ids"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    internal=True,
)
app_ids_failed_topic = _keyed_by_app("app-ids-failed", FailedInput)


def _batches(short: str, maxsize: int | None = None) -> Any:
    """A batch topic: JSON values read by ``steamprice.batches``, no key, explicit partitions.

    No value type: a Record would refuse the shape of one record per app that these topics held
    before batches (still accepted, so an upgrade loses nothing in flight). ``maxsize``: how
    many records its agent may have delivered and not yet read (Faust's default,
    ``stream_buffer_maxsize``, is 4,096).
    """
    topic = app.topic(settings.topic_name(short), value_serializer="json", internal=True)
    topic.maxsize = maxsize  # app.topic takes a maxsize but drops it (faust-streaming 0.15.3)
    return topic


# Internal: schedule commands for the apps of one partition, co-partitioned with app-state.
schedule_topic = _batches("schedule")
# Internal: apps of one partition due for pricing now.
crawl_requests_topic = _batches("crawl-requests")
prices_raw_topic = _batches("prices-raw")
# At most 256 records (25,600 observations) wait in memory for the MySQL sink: with Faust's
# 4,096, a first sweep that outran MySQL queued ~2,000 decoded records (about 200 MB) behind
# a transaction. When it is full, deliveries wait for the sink (backpressure); Kafka holds
# the rest.
prices_normalized_topic = _batches("prices-normalized", maxsize=256)
price_changes_topic = _keyed_by_app("price-changes", PriceChange)
# Internal: the discounted apps of each batch, to ask GetItems when their discount ends
# (``steamprice.enddates.asks_record``); same partition as the batch they come from.
end_date_asks_topic = _batches("end-date-asks")
# Discord alert rules, keyed by rule name, JSON values (a null value removes the rule); written
# by `steamprice alerts`, read whole by every worker (notify/rulebook.py). Compacted: the latest
# record per name is kept forever. One partition: a few hundred small records.
alert_rules_topic = app.topic(
    settings.topic_name("alert-rules"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=1,
    compacting=True,
    internal=True,
)

ALL_TOPICS = (
    app_ids_topic,
    app_ids_failed_topic,
    schedule_topic,
    crawl_requests_topic,
    prices_raw_topic,
    prices_normalized_topic,
    price_changes_topic,
    end_date_asks_topic,
    alert_rules_topic,
)


def partitions() -> int:
    """Partitions of the pipeline's topics (all have the same number: co-partitioned)."""
    return int(schedule_topic.partitions or app.conf.topic_partitions)


async def send_schedule(
    commands: Iterable[ScheduleCommand], partition: int | None = None, *, delivered: bool = False
) -> int:
    """Commands to the schedule topic: one record per partition, op and time; returns how many.

    ``partition``: every command's app is known to be of that partition (no hashing).
    ``delivered``: return only once the broker has every record (sent at once, not lingering).
    """
    groups: dict[tuple[int, str, datetime], list[ScheduleCommand]] = {}
    count = partitions()
    for cmd in commands:
        where = partition_for(cmd.app_id, count) if partition is None else partition
        groups.setdefault((where, cmd.op, cmd.at), []).append(cmd)
    records: dict[int, list[dict[str, Any]]] = {}
    for (where, _, _), group in groups.items():
        records.setdefault(where, []).extend(schedule_record(c) for c in chunks(group))
    if delivered:
        await asyncio.gather(
            *(
                send_now(app, schedule_topic, where, [json_bytes(v) for v in values])
                for where, values in records.items()
            )
        )
    else:
        for where, values in records.items():
            for value in values:
                await schedule_topic.send(value=value, partition=where)
    return sum(map(len, records.values()))


async def send_crawl_requests(
    requested_at: datetime,
    app_ids: Sequence[int] | Mapping[int, Sequence[int]],
    reseeded: Collection[int] = (),
) -> int:
    """Apps to price: one ``crawl-requests`` record per partition; returns how many.

    ``app_ids``: a list, or lists by partition (already grouped). ``reseeded``: those of them
    priced because someone seeded them (their end dates are asked again).
    """
    groups = app_ids if isinstance(app_ids, Mapping) else by_partition(app_ids, partitions())
    marked = frozenset(reseeded)
    records = {
        where: [
            json_bytes(crawl_record(requested_at, chunk, marked.intersection(chunk)))
            for chunk in chunks(list(ids))
        ]
        for where, ids in groups.items()
    }
    # Returns once the broker has every record: a caller that then marks the apps pending in a
    # table can never have the mark survive a crash without the request (its changelog write
    # and these records are separate sends, and a kill -9 may deliver one without the other).
    # Sent at once, not after the producer's linger, and every partition's together: one wait.
    await asyncio.gather(
        *(send_now(app, crawl_requests_topic, where, values) for where, values in records.items())
    )
    return sum(map(len, records.values()))


async def send_seeds(app_ids: Sequence[int], sent: Callable[[int], object] = lambda n: None) -> int:
    """Seeds on the seed topic through the app's producer (``seeding.send_seed_batches``)."""
    producer = await app.maybe_start_producer()
    kafka = cast(Any, producer)._ensure_producer()
    return await send_seed_batches(kafka, app_ids_topic.get_topic_name(), app_ids, sent)
