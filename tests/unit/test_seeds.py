"""The seed intake's consumer loop (``steamprice.seeds``) around a fake aiokafka consumer: what is
committed, what is read again, what a rebalance takes away. (Against the real broker:
``tests/integration/test_seed_intake.py`` and the fault suite.)"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from steamprice import seeds
from steamprice.metrics import Metrics
from steamprice.seeds import SeedConsumer

TOPIC = "unit.app-ids"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def records(tp: TopicPartition, first: int, n: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord(tp.topic, tp.partition, o, 0, 0, b"1", b"1", None, 1, 1, ())
        for o in range(first, first + n)
    ]


class FakeConsumer:
    """What SeedConsumer uses of an AIOKafkaConsumer; getmany hands out ``fetches`` in turn."""

    def __init__(self, fetches: list[dict[TopicPartition, Any]], fail_commit: bool = False) -> None:
        self.fetches = fetches
        self.assigned = {P0, P1}
        self.sought: list[tuple[TopicPartition, int]] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail_commit = fail_commit

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought.append((tp, offset))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail_commit:
            raise RuntimeError("generation changed")
        self.commits.append(dict(offsets))

    async def getmany(self, timeout_ms: int = 0) -> dict[TopicPartition, Any]:
        if not self.fetches:
            await asyncio.sleep(3600)
        return self.fetches.pop(0)


class Handler:
    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls: list[list[int]] = []

    async def __call__(self, recs: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        self.calls.append([r.offset for r in recs])
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker unreachable")


def intake(handler: Handler, metrics: Metrics) -> SeedConsumer:
    return SeedConsumer(
        kafka_broker="kafka://127.0.0.1:1", topic=TOPIC, group="g", handler=handler, metrics=metrics
    )


async def run_until_idle(service: SeedConsumer, consumer: FakeConsumer) -> None:
    service.consumer = consumer  # type: ignore[assignment]
    task = asyncio.ensure_future(SeedConsumer._run(service))
    for _ in range(50):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_handled_fetch_is_committed_after_its_last_record() -> None:
    handler, metrics = Handler(), Metrics.create()
    service = intake(handler, metrics)
    consumer = FakeConsumer([{P0: records(P0, 0, 3), P1: records(P1, 10, 2)}])
    await run_until_idle(service, consumer)
    assert handler.calls == [[0, 1, 2, 10, 11]]
    assert consumer.commits == [{P0: 3, P1: 12}]
    assert service.committed == {P0: 3, P1: 12}
    assert consumer.sought == []


async def test_a_fetch_the_handler_fails_on_is_read_again_not_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(seeds, "RETRY_SECONDS", 0.0)
    handler, metrics = Handler(fail=1), Metrics.create()
    service = intake(handler, metrics)
    consumer = FakeConsumer([{P0: records(P0, 5, 2)}])
    await run_until_idle(service, consumer)
    assert consumer.commits == []
    assert consumer.sought == [(P0, 5)]  # back to the fetch's first record
    reread = {"topic": "app-ids", "operation": "reread"}
    assert metrics.registry.get_sample_value("steam_kafka_messages_total", reread) == 2


async def test_a_commit_that_fails_leaves_the_offsets_to_be_read_again() -> None:
    handler, metrics = Handler(), Metrics.create()
    service = intake(handler, metrics)
    consumer = FakeConsumer([{P0: records(P0, 0, 1)}], fail_commit=True)
    await run_until_idle(service, consumer)
    assert handler.calls == [[0]]
    assert service.committed == {}  # lag still counts them


async def test_records_of_partitions_revoked_or_sought_since_their_fetch_are_dropped() -> None:
    handler, metrics = Handler(), Metrics.create()
    service = intake(handler, metrics)
    consumer = FakeConsumer([{P0: records(P0, 0, 2), P1: records(P1, 0, 2)}])
    # A rebalance's listener holds the loop's lock while the fetch waits for it.
    await service._busy.acquire()
    service.consumer = consumer  # type: ignore[assignment]
    task = asyncio.ensure_future(SeedConsumer._run(service))
    for _ in range(10):
        await asyncio.sleep(0)
    assert handler.calls == []
    consumer.assigned = {P1}  # P0 went to another worker
    service._sought[P1] = 1  # P1 was sought elsewhere (an upgrade's start position)
    service._busy.release()
    for _ in range(10):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert handler.calls == []
    assert consumer.commits == []
