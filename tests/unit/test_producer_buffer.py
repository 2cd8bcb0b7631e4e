"""The buffer of table writes (``kafka.ProducerBuffer``): counted waits instead of polled ones.

The buffer runs as the worker runs it (a started mode service with its sending task); only the
Kafka producer behind it is a stand-in, whose sends the tests release one by one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import RecordMetadata
from faust.tables.base import Collection
from faust.types import TP
from faust.types.tuples import FutureMessage, PendingMessage

from steamprice import kafka


class Channel:
    """What a queued message is published to; each send waits for the test to release it."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.gate = asyncio.Semaphore(0)
        self.fail: BaseException | None = None

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await self.gate.acquire()
        if self.fail is not None:
            raise self.fail
        self.sent.append(fut.n)


class Future:
    def __init__(self, channel: Channel, n: int) -> None:
        self.n = n
        self.message = type("Pending", (), {"channel": channel})()


@pytest.fixture
async def buffer() -> AsyncIterator[kafka.ProducerBuffer]:
    buf = kafka.ProducerBuffer()
    await buf.start()
    yield buf
    buf.pending = asyncio.Queue()  # what a test left unsent stays so
    await asyncio.wait_for(buf.stop(), 5)


def put(buf: kafka.ProducerBuffer, channel: Channel, numbers: range) -> None:
    for n in numbers:
        buf.put(Future(channel, n))  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_flush_waits_for_what_was_queued_before_it_not_after(
    buffer: kafka.ProducerBuffer,
) -> None:
    channel = Channel()
    put(buffer, channel, range(3))
    flush = asyncio.create_task(buffer.flush())
    await settle()  # the commit's flush began
    put(buffer, channel, range(3, 6))  # written while it waits
    for _ in range(2):
        channel.gate.release()
    await settle()
    assert not flush.done()  # Faust's returned after 0.1 s without a send, whatever was left
    channel.gate.release()
    await asyncio.wait_for(flush, 1)
    assert channel.sent == [0, 1, 2] and buffer.put_count - buffer.sent_count == 3
    for _ in range(3):
        channel.gate.release()
    await asyncio.wait_for(buffer.flush(), 1)
    assert channel.sent == list(range(6)) and buffer.size == 0


async def test_the_conductor_waits_only_past_the_limit_and_then_until_half_went(
    buffer: kafka.ProducerBuffer,
) -> None:
    channel = Channel()
    limit = buffer.max_messages
    put(buffer, channel, range(limit))
    await asyncio.wait_for(buffer.wait_until_ebb(), 1)  # at the limit: no wait
    put(buffer, channel, range(limit, limit + 10))
    ebb = asyncio.create_task(buffer.wait_until_ebb())
    await settle()
    assert buffer.holding and not ebb.done()
    for _ in range(limit // 2 + 9):
        channel.gate.release()
    await settle()
    assert not ebb.done()
    channel.gate.release()
    await asyncio.wait_for(ebb, 1)
    assert not buffer.holding and buffer.put_count - buffer.sent_count == limit // 2


async def test_a_stopping_buffer_sends_what_is_left_itself(buffer: kafka.ProducerBuffer) -> None:
    channel = Channel()
    put(buffer, channel, range(5))
    for _ in range(5):
        channel.gate.release()
    buffer._stopped.set()  # as stop() begins: the sending task ends at its next message
    await asyncio.wait_for(buffer.flush(), 1)
    assert sorted(set(channel.sent)) == list(range(5)) and buffer.size == 0


async def test_a_send_that_fails_fails_the_flush_instead_of_hanging_it(
    buffer: kafka.ProducerBuffer,
) -> None:
    channel = Channel()
    channel.fail = RuntimeError("broker gone")
    put(buffer, channel, range(2))
    flush = asyncio.create_task(buffer.flush())
    await settle()
    channel.gate.release()
    with pytest.raises(RuntimeError, match="broker gone"):
        await asyncio.wait_for(flush, 1)


# --- table writes as record batches ------------------------------------------------------------


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
        self.closed: list[bool] = []  # of each batch sent: closed, so aiokafka does not linger

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(
        self, batch: BatchBuilder, topic: str, *, partition: int
    ) -> asyncio.Future[RecordMetadata]:
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, batch.record_count(), future))
        self.closed.append(batch.closed())
        return future

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


Batching = tuple[kafka.ProducerBuffer, Kafka, Sensors, BulkSensors]


@pytest.fixture
async def batching() -> AsyncIterator[Batching]:
    kafka_producer, sensors, bulk = Kafka(), Sensors(), BulkSensors()
    buf = kafka.ProducerBuffer()
    buf.app = type(  # type: ignore[assignment]
        "App",
        (),
        {
            "producer": Producer(kafka_producer),
            "sensors": [sensors, bulk],
            "in_transaction": False,
        },
    )()
    await buf.start()
    yield buf, kafka_producer, sensors, bulk
    await asyncio.wait_for(buf.stop(), 5)


async def test_table_writes_go_out_as_one_record_batch_per_partition(
    batching: Batching,
) -> None:
    buf, kafka_producer, sensors, bulk = batching
    table, topic = Table(), Topic("app-price-state-changelog")
    writes = [write(table, topic, n % 3, n) for n in range(12)]
    for fut in writes:
        buf.put(fut)
    await asyncio.wait_for(buf.flush(), 1)
    # Handed over: one batch per partition, in the order written; nothing acknowledged yet.
    assert [(t, p, n) for t, p, n, _ in kafka_producer.sent] == [
        (topic.name, 0, 4),
        (topic.name, 1, 4),
        (topic.name, 2, 4),
    ]
    # Closed, so aiokafka sends them at once (no linger for writes that will not come).
    assert kafka_producer.closed == [True] * 3
    assert buf.size == 0 and buf.app.producer.produced == 12  # type: ignore[union-attr]
    assert len(sensors.initiated) == 12 and not any(f.done() for f in writes)
    kafka_producer.deliver(1, base_offset=100)
    await settle()
    # Each write of partition 1 has its own offset, the store the last one, written once.
    partition_1 = [f for n, f in enumerate(writes) if n % 3 == 1]
    assert [f.result().offset for f in partition_1] == [100, 101, 102, 103]
    assert table.data.persisted == [(TP(topic.name, 1), 103)]
    assert sensors.completed == [100, 101, 102, 103]
    # A sensor that takes a count is told once per batch.
    assert bulk.initiated == [(topic.name, 4)] * 3 and bulk.completed == [4]
    assert not any(f.done() for n, f in enumerate(writes) if n % 3 != 1)


async def test_a_partition_s_writes_beyond_one_batch_go_in_several_in_order(
    batching: Batching,
) -> None:
    buf, kafka_producer, _, _ = batching
    kafka_producer.batch_size = 1000
    table, topic = Table(), Topic("app-price-history-changelog")
    writes = [write(table, topic, 0, n, size=150) for n in range(20)]
    for fut in writes:
        buf.put(fut)
    await asyncio.wait_for(buf.flush(), 1)
    counts = [n for _, _, n, _ in kafka_producer.sent]
    assert len(counts) > 1 and sum(counts) == 20
    assert kafka_producer.closed == [True] * len(counts)  # the last, not full, as well
    base = 0
    for index, count in enumerate(counts):
        kafka_producer.deliver(index, base_offset=base)
        base += count
    await settle()
    assert [f.result().offset for f in writes] == list(range(20))
    assert table.data.persisted[-1] == (TP(topic.name, 0), 19)
    assert len(table.data.persisted) == len(counts)


async def test_a_round_hands_over_every_queued_write_a_batch_holds(batching: Batching) -> None:
    """aiokafka queues one batch per partition and makes the next wait until that one is sent:
    rounds of 1,000 writes, in 16 kB batches, capped the buffer at about one round per produce
    request, and it fell tens of thousands of writes behind a first sweep (the conductor holding
    every delivery meanwhile). A round takes up to 10,000, and the worker's batches hold 512 kB."""
    buf, kafka_producer, _, _ = batching
    kafka_producer.batch_size = 512 * 1024
    table, topic = Table(), Topic("app-app-state-changelog")
    for n in range(6000):
        buf.put(write(table, topic, n % 2, n, size=40))
    await asyncio.wait_for(buf.flush(), 5)
    assert [(p, n) for _, p, n, _ in kafka_producer.sent] == [(0, 3000), (1, 3000)]


async def test_the_worker_s_kafka_producer_builds_batches_of_512_kb() -> None:
    from steamprice.app import app

    builder = app.producer._new_producer().create_batch()
    for n in range(500):  # 500 kB of table writes
        assert builder.append(timestamp=None, key=b"%d" % n, value=b"x" * 1000) is not None
    assert builder.append(timestamp=None, key=b"full", value=b"x" * 20_000) is None


async def test_table_writes_and_other_messages_are_handed_over_in_the_order_queued(
    batching: Batching,
) -> None:
    # A flush waits for a count of messages sent: were a later message sent first, a flush
    # could return with an earlier table write still queued.
    buf, kafka_producer, _, _ = batching
    table, topic, channel = Table(), Topic("app-price-state-changelog"), Channel()
    buf.put(write(table, topic, 0, 1))
    put(buf, channel, range(1))  # not a table write: published as Faust does
    buf.put(write(table, topic, 0, 2))
    await settle()
    assert [n for _, _, n, _ in kafka_producer.sent] == [1] and buf.sent_count == 1
    channel.gate.release()
    await asyncio.wait_for(buf.flush(), 1)
    assert [n for _, _, n, _ in kafka_producer.sent] == [1, 1] and channel.sent == [0]


async def test_send_now_sends_closed_batches_and_returns_once_they_are_delivered() -> None:
    """Closed (so aiokafka does not linger on them), counted on the sensors as Faust counts a
    send, split where a batch is full, and awaited until the broker has every one."""
    kafka_producer, sensors, bulk = Kafka(batch_size=1000), Sensors(), BulkSensors()
    app = type(
        "App",
        (),
        {
            "producer": Producer(kafka_producer),
            "sensors": [sensors, bulk],
            "consumer_generation_id": 0,
        },
    )()
    closed: list[bool] = []
    send_batch = kafka_producer.send_batch

    async def sent_closed(batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        closed.append(batch.closed())
        return await send_batch(batch, topic, partition=partition)

    kafka_producer.send_batch = sent_closed  # type: ignore[method-assign]
    topic = Topic("app-crawl-requests")
    values = [json.dumps({"app_ids": list(range(n, n + 40))}).encode() for n in range(6)]
    sending = asyncio.ensure_future(kafka.send_now(app, topic, 5, values))
    await settle()
    assert len(kafka_producer.sent) > 1 and closed == [True] * len(kafka_producer.sent)
    assert sum(n for _, _, n, _ in kafka_producer.sent) == 6
    assert {(t, p) for t, p, _, _ in kafka_producer.sent} == {(topic.name, 5)}
    assert not sending.done()  # not delivered yet
    for index in range(len(kafka_producer.sent) - 1):
        kafka_producer.deliver(index, base_offset=10 * index)
    await settle()
    assert not sending.done()
    kafka_producer.deliver(len(kafka_producer.sent) - 1, base_offset=99)
    await asyncio.wait_for(sending, 1)
    assert len(sensors.initiated) == 6 and len(sensors.completed) == 6
    assert app.producer.produced == 6  # the on_produce_message signal, once per message
    assert sum(count for _, count in bulk.initiated) == 6 and sum(bulk.completed) == 6
    # A value larger than a batch is a batch of its own, as aiokafka takes it.
    sending = asyncio.ensure_future(kafka.send_now(app, topic, 2, [b"x" * 2000]))
    await settle()
    assert kafka_producer.sent[-1][1:3] == (2, 1) and closed[-1]
    kafka_producer.deliver(len(kafka_producer.sent) - 1, base_offset=7)
    await asyncio.wait_for(sending, 1)


async def test_aiokafka_sends_a_closed_batch_without_lingering() -> None:
    """What ``send_now`` relies on: a batch that takes no more messages is ready at once."""
    from aiokafka.producer.message_accumulator import MessageBatch

    builder = BatchBuilder(16384, 0)
    builder.append(timestamp=None, key=None, value=b"1")
    batch = MessageBatch(TopicPartition("t", 0), builder, ttl=30, linger_time=60.0)
    assert batch.remaining_linger() is not None  # an open one waits for more
    builder.close()
    assert batch.remaining_linger() is None


async def test_send_now_raises_what_the_broker_answers_and_tells_the_sensors() -> None:
    kafka_producer, errors = Kafka(), []

    class Failing(Sensors):
        def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
            errors.append(exc)

    app = type(
        "App",
        (),
        {
            "producer": Producer(kafka_producer),
            "sensors": [Failing()],
            "consumer_generation_id": 0,
        },
    )()
    sending = asyncio.ensure_future(
        kafka.send_now(app, Topic("app-crawl-requests"), 0, [b"1", b"2"])
    )
    await settle()
    boom = RuntimeError("not the leader")
    kafka_producer.sent[0][3].set_exception(boom)
    with pytest.raises(RuntimeError, match="not the leader"):
        await asyncio.wait_for(sending, 1)
    assert errors == [boom, boom]
