"""Price records as the crawler publishes them: batches on prices-raw, one per partition."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from steamprice.batches import RawBatch, by_partition, raw_record
from tests.support.processes import Pipeline


def priced_entry(initial: int, final: int, discount: int, currency: str = "USD") -> str:
    """One app's ``appdetails`` entry with a price, as Steam answers it."""
    overview = {
        "currency": currency,
        "initial": initial,
        "final": final,
        "discount_percent": discount,
        "initial_formatted": "",
        "final_formatted": "",
    }
    return json.dumps({"success": True, "data": {"price_overview": overview}})


async def send_prices(
    pipeline: Pipeline, cc: str, fetched_at: datetime, entries: Mapping[int, str]
) -> int:
    """One Steam answer on prices-raw: a record per partition, sent there; returns how many."""
    partitions = int(pipeline.env["TOPIC_PARTITIONS"])
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka)
    await producer.start()
    try:
        groups = by_partition(sorted(entries), partitions)
        for partition, app_ids in groups.items():
            batch = RawBatch(cc, fetched_at, [(a, entries[a]) for a in app_ids])
            value = json.dumps(raw_record(batch)).encode()
            await producer.send_and_wait(pipeline.topic("prices-raw"), value, partition=partition)
        return len(groups)
    finally:
        await producer.stop()


def observations_in(value: bytes | None) -> list[dict[str, Any]]:
    """The observations of one prices-normalized record (a batch, or one before batches)."""
    if value is None:
        return []
    doc = json.loads(value)
    return list(doc["observations"]) if "observations" in doc else [doc]


async def read_by_partition(pipeline: Pipeline, name: str) -> list[tuple[int, bytes | None, bytes]]:
    """Every record of topic ``name`` (full name) as (partition, key, value), oldest first."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=pipeline.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[tuple[int, bytes | None, bytes]] = []
        for tp in tps:
            while await consumer.position(tp) < end[tp]:
                for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                    out.extend((r.partition, r.key, r.value) for r in records)
        return out
    finally:
        await consumer.stop()
