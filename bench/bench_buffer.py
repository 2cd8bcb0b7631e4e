"""Table writes through the producer buffer: a message each (Faust's way) or a batch per record.

What a change agent's record costs once its writes are made: 100,000 changelog writes, 100 a
record over 8 partitions, queued in ``kafka.ProducerBuffer`` either as one ``FutureMessage``
each (as Faust's ``table[key] = value`` and ``send_soon`` queue them) or as one
``kafka.ChangelogWrites`` per record (as ``tables.PartitionWriter`` queues them), handed over as
record batches and delivered. aiokafka's producer is a stand-in (real record batches, no
broker), so the figure is the worker's CPU for the buffer alone, both ways in the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from faust.types.tuples import FutureMessage, PendingMessage

from steamprice import kafka
from tests.support.producer import BulkSensors, Kafka, Producer, Table, Topic

WRITES = 100_000
PER_RECORD = 100
PARTITIONS = 8
ROUNDS = 5


async def through_buffer(batched: bool) -> float:
    """CPU microseconds per write, queued until delivered."""
    producer = Kafka()
    buffer = kafka.ProducerBuffer()
    buffer.app = type(
        "App",
        (),
        {"producer": Producer(producer), "sensors": [BulkSensors()], "in_transaction": False},
    )()
    await buffer.start()
    table, topic = Table(), Topic("bench-price-state-changelog")
    table.changelog_topic = topic
    table.key_serializer = table.value_serializer = "json"
    value = b'{"status":"priced","currency":"USD","initial":1999,"final":999,"discount":50}'
    writes = [(f'"{n}:us"'.encode(), value) for n in range(WRITES)]
    started = time.process_time()
    for first in range(0, WRITES, PER_RECORD):
        record, partition = writes[first : first + PER_RECORD], first // PER_RECORD % PARTITIONS
        if batched:
            buffer.put_changes(kafka.ChangelogWrites(table, partition, list(record)))
        else:
            callback: Any = table._on_changelog_sent
            for key, raw in record:
                message = PendingMessage(
                    topic, key, raw, partition, None, {}, "json", "json", callback, None, None, 1
                )
                buffer.put(FutureMessage(message))
        await asyncio.sleep(0)  # the buffer's task runs between records, as in a worker
    await buffer.flush()
    offset = 0
    for index, (_, _, count, _) in enumerate(producer.sent):
        producer.deliver(index, base_offset=offset)
        offset += count
    await asyncio.sleep(0)
    cpu = time.process_time() - started
    await buffer.stop()
    assert table.data.persisted, "no offset reached the table's store"
    return cpu / WRITES * 1e6


async def main() -> dict[str, object]:
    each, batched = [], []
    for _ in range(ROUNDS):  # alternated, so drift of the machine's speed hits both
        each.append(await through_buffer(batched=False))
        batched.append(await through_buffer(batched=True))
    figures = {
        "message_per_write_us": round(statistics.median(each), 2),
        "batch_per_record_us": round(statistics.median(batched), 2),
    }
    ratio = figures["message_per_write_us"] / figures["batch_per_record_us"]
    print(f"  a message per write:   {figures['message_per_write_us']:.2f} us CPU per write")
    print(f"  a batch per record:    {figures['batch_per_record_us']:.2f} us CPU per write")
    print(f"  ratio: {ratio:.1f}x (medians of {ROUNDS} alternated rounds of {WRITES:,} writes)")
    return {**figures, "ratio": round(ratio, 2)}
