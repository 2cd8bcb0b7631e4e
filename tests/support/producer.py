"""Stand-ins behind ``kafka.ProducerBuffer``: aiokafka's producer (real record batches, sends a
test completes), Faust's producer, a table as Faust's changelog callback touches it, and
sensors that count message by message or a batch at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiokafka import TopicPartition
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import RecordMetadata
from faust.tables.base import Collection
from faust.types import TP
from faust.types.tuples import FutureMessage, PendingMessage


class Topic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class Store:
    def __init__(self) -> None:
        self.persisted: list[tuple[TP, int]] = []

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted.append((tp, offset))


class Table:
    """What Faust's changelog callback touches on its table; the callback is Faust's own."""

    _on_changelog_sent = Collection._on_changelog_sent

    def __init__(self) -> None:
        self.app = type("App", (), {"in_transaction": False})()
        self.data = Store()


class Kafka:
    """aiokafka's producer behind Faust's: real record batches, sends the test completes."""

    def __init__(self, batch_size: int = 16384) -> None:
        self.batch_size = batch_size
        self.sent: list[tuple[str, int, int, asyncio.Future[RecordMetadata]]] = []
        self.batches: list[BatchBuilder] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(
        self, batch: BatchBuilder, topic: str, *, partition: int
    ) -> asyncio.Future[RecordMetadata]:
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, batch.record_count(), future))
        self.batches.append(batch)
        return future

    def records(self, index: int) -> list[tuple[bytes, bytes]]:
        """The keys and values of a batch handed over, in order, as Kafka gets them."""
        batch = MemoryRecords(bytes(self.batches[index]._build())).next_batch()
        return [(record.key, record.value) for record in batch]

    def deliver(self, index: int, base_offset: int) -> None:
        topic, partition, _, future = self.sent[index]
        tp = TopicPartition(topic, partition)
        future.set_result(RecordMetadata(topic, partition, tp, base_offset, 1, 0, 0))


class Sensors:
    def __init__(self) -> None:
        self.initiated: list[tuple[str, int]] = []
        self.completed: list[int] = []

    def on_send_initiated(self, producer: Any, topic: str, message: Any, **sizes: int) -> Any:
        self.initiated.append((topic, message.partition))
        return len(self.initiated)

    def on_send_completed(self, producer: Any, state: Any, metadata: RecordMetadata) -> None:
        self.completed.append(metadata.offset)

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        raise AssertionError(exc)


class BulkSensors:
    """A sensor that takes a batch's count in one call (as ``web.PrometheusMonitor``)."""

    def __init__(self) -> None:
        self.initiated: list[tuple[str, int]] = []
        self.completed: list[int] = []

    def on_sends_initiated(self, producer: Any, topic: str, count: int) -> Any:
        self.initiated.append((topic, count))
        return "state"

    def on_sends_completed(self, producer: Any, state: Any, count: int) -> None:
        assert state == "state"
        self.completed.append(count)

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        raise AssertionError(exc)


class Producer:
    allow_headers = True

    def __init__(self, kafka_producer: Kafka) -> None:
        self.kafka = kafka_producer
        self.produced = 0

    def _ensure_producer(self) -> Kafka:
        return self.kafka

    def _send_on_produce_message(self, **fields: Any) -> None:
        self.produced += 1


def write(table: Table, topic: Topic, partition: int, n: int, size: int = 10) -> FutureMessage:
    value = json.dumps({"n": n, "pad": "x" * size}).encode()
    callback = table._on_changelog_sent
    message = PendingMessage(
        topic, f'"{n}"'.encode(), value, partition, None, {}, "json", "json", callback, None, None
    )
    return FutureMessage(message)
