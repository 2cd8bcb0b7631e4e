"""The batch loop of the sinks and the crawler, driven by a stand-in stream (no broker)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from steamprice.batching import Batcher, PartitionBatcher, PartitionQueue, Requested
from tests.support.infra import wait_for


@dataclass
class Event:
    value: int


@dataclass
class Stream:
    """Yields events as the test feeds them; records acks."""

    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    acked: list[int] = field(default_factory=list)

    def feed(self, *values: int) -> None:
        for v in values:
            self.queue.put_nowait(Event(v))

    async def events(self) -> AsyncIterator[Event]:
        while True:
            yield await self.queue.get()

    async def ack(self, event: Event) -> bool:
        self.acked.append(event.value)
        return True


class Stop(Exception):
    """Stands for ``DatabaseStopping``."""


class Recorder:
    """The ``process`` of a batcher: records each batch, fails or blocks on request."""

    def __init__(self, stream: Stream, fail: type[Exception] | None = None) -> None:
        self.stream = stream
        self.fail = fail
        self.hold: asyncio.Event | None = None
        self.running = 0
        self.overlapped = False
        self.batches: list[tuple[float, list[int], list[int]]] = []

    async def __call__(self, values: Sequence[int]) -> None:
        self.running += 1
        self.overlapped |= self.running > 1
        try:
            # What was acked when processing began: nothing of this batch may be.
            self.batches.append((time.monotonic(), list(values), list(self.stream.acked)))
            if self.hold is not None:
                await self.hold.wait()
            if self.fail is not None:
                raise self.fail("boom")
        finally:
            self.running -= 1


def start(batcher: Batcher | PartitionBatcher) -> asyncio.Future[None]:
    return asyncio.ensure_future(batcher.run())


async def settle(condition: Callable[[], object]) -> None:
    async def probe() -> bool:
        return bool(condition())

    await wait_for("the batcher", probe, timeout=3.0, every=0.01)


async def stop(task: asyncio.Future[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_batch_closes_wait_seconds_after_its_first_event_not_on_a_cycle() -> None:
    stream = Stream()
    record = Recorder(stream)
    task = start(Batcher(stream, size=100, wait=0.3, process=record))
    try:
        await asyncio.sleep(0.2)  # idle first: a fixed cycle would close right after this
        first = time.monotonic()
        stream.feed(1, 2)
        await asyncio.sleep(0.15)  # a straggler, well within the wait
        stream.feed(3)
        await settle(lambda: record.batches)
        closed_at, values, acked_before = record.batches[0]
        assert values == [1, 2, 3] and acked_before == []
        assert closed_at - first >= 0.3
        await settle(lambda: stream.acked == [1, 2, 3])
    finally:
        await stop(task)


async def test_a_full_batch_goes_at_once_and_the_rest_waits_its_turn() -> None:
    stream = Stream()
    record = Recorder(stream)
    task = start(Batcher(stream, size=3, wait=5.0, process=record))
    try:
        stream.feed(*range(1, 8))
        await settle(lambda: len(record.batches) == 2)
        assert [b[1] for b in record.batches] == [[1, 2, 3], [4, 5, 6]]
        assert record.batches[1][2] == [1, 2, 3]  # the first batch was acked before the next
        await settle(lambda: stream.acked == [1, 2, 3, 4, 5, 6])
        await asyncio.sleep(0.1)
        assert stream.acked == [1, 2, 3, 4, 5, 6]  # 7 waits for more or for its 5 s
    finally:
        await stop(task)


async def test_no_event_is_read_while_a_batch_is_processed_and_batches_keep_order() -> None:
    stream = Stream()
    record = Recorder(stream)
    record.hold = asyncio.Event()
    task = start(Batcher(stream, size=2, wait=0.05, process=record))
    try:
        stream.feed(1, 2)
        await settle(lambda: record.batches)
        stream.feed(3, 4, 5, 6, 7)
        await asyncio.sleep(0.2)
        # Backpressure: the full batch is processed by the reader itself, so nothing is read.
        assert stream.queue.qsize() == 5 and stream.acked == []
        record.hold.set()
        await settle(lambda: stream.acked == [1, 2, 3, 4, 5, 6, 7])
        assert [b[1] for b in record.batches] == [[1, 2], [3, 4], [5, 6], [7]]
        assert not record.overlapped
    finally:
        await stop(task)


async def test_a_failing_batch_is_logged_and_acked_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = Stream()
    record = Recorder(stream, fail=RuntimeError)
    task = start(Batcher(stream, size=2, wait=0.1, process=record, name="crawl"))
    try:
        stream.feed(1, 2, 3)
        await settle(lambda: stream.acked == [1, 2, 3])
        assert [b[1] for b in record.batches] == [[1, 2], [3]]
        assert "crawl: a batch of 2 events failed; acked" in caplog.text
        assert not task.done()  # still batching
    finally:
        await stop(task)


async def test_without_ack_errors_a_failing_batch_stays_unacked_and_ends_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = Stream()
    record = Recorder(stream)
    task = start(Batcher(stream, size=2, wait=0.1, process=record, ack_errors=False, name="sink"))
    try:
        stream.feed(1, 2)
        await settle(lambda: stream.acked == [1, 2])
        record.fail = RuntimeError
        stream.feed(3, 4)
        with pytest.raises(RuntimeError, match="boom"):
            await asyncio.wait_for(task, 3)
        assert stream.acked == [1, 2]
        assert "sink: a batch of 2 events failed; not acked" in caplog.text
    finally:
        await stop(task)


async def test_a_stopping_resource_leaves_its_batch_unacked_and_ends_the_loop_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "steamprice.batching")
    stream = Stream()
    record = Recorder(stream)
    batcher = Batcher(
        stream, size=10, wait=0.05, process=record, ack_errors=False, stop_on=(Stop,), name="s"
    )
    task = start(batcher)
    try:
        stream.feed(1)
        await settle(lambda: stream.acked == [1])
        record.fail = Stop
        stream.feed(2, 3)
        await asyncio.wait_for(task, 3)  # returns, no error
        assert stream.acked == [1]
        assert "Stopping: 2 events of s not processed, Kafka redelivers them" in caplog.text
    finally:
        await stop(task)


@pytest.mark.parametrize("ack_errors", [False, True])
async def test_a_batch_cut_short_by_a_shutdown_is_never_acked(ack_errors: bool) -> None:
    # Acked, its events would be committed unprocessed: a crawl batch cut short by SIGTERM
    # was lost that way (Kafka must redeliver it after the restart).
    stream = Stream()
    record = Recorder(stream)
    record.hold = asyncio.Event()  # never set: processing is still running at the shutdown
    task = start(Batcher(stream, size=2, wait=5.0, process=record, ack_errors=ack_errors))
    stream.feed(1, 2)
    await settle(lambda: record.batches)
    await stop(task)
    assert stream.acked == []


async def test_while_a_timed_batch_is_processed_the_reader_holds_at_most_one_event() -> None:
    stream = Stream()
    record = Recorder(stream)
    record.hold = asyncio.Event()
    task = start(Batcher(stream, size=10, wait=0.05, process=record))
    try:
        stream.feed(1)
        await settle(lambda: record.batches)  # closed by its wait, in the timer's task
        stream.feed(2, 3, 4, 5, 6)
        await asyncio.sleep(0.2)
        assert stream.queue.qsize() == 4 and stream.acked == []
        record.hold.set()
        await settle(lambda: stream.acked == [1, 2, 3, 4, 5, 6])
        assert [b[1] for b in record.batches] == [[1], [2, 3, 4, 5, 6]]
    finally:
        await stop(task)


# --- PartitionQueue / PartitionBatcher: the crawler's grouping of apps by partition ------------


def test_a_queue_gives_a_full_partition_first_and_mixes_whole_partitions_oldest_first() -> None:
    queue = PartitionQueue(size=4)
    queue.add("r1", 1, [10, 11], now=0.0)
    queue.add("r2", 2, [20, 21, 22], now=1.0)
    queue.add("r3", 3, [30], now=2.0)
    assert queue.take_full() == [] and queue.count == 6 and queue.oldest() == 0.0
    queue.add("r4", 2, [23, 24], now=3.0)
    full = queue.take_full()
    assert [(w.partition, w.app_id) for w in full] == [(2, 20), (2, 21), (2, 22), (2, 23)]
    mixed = queue.take_mixed()
    # Whole partitions by the age of their oldest app waiting: 1 (0.0), 3 (2.0), 2 (24: 3.0).
    assert [(w.partition, w.app_id) for w in mixed] == [(1, 10), (1, 11), (3, 30), (2, 24)]
    assert queue.count == 0 and queue.oldest() is None


def test_a_record_is_done_when_every_app_it_brought_is_and_an_app_waits_once() -> None:
    queue = PartitionQueue(size=3)
    assert not queue.add("r1", 0, [1, 2, 2], now=0.0)  # 2 twice in one record: once
    assert not queue.add("r2", 0, [2, 3], now=1.0)  # 2 again: the same place in the queue
    assert queue.add("empty", 0, [], now=1.0)  # nothing to wait for: done at once
    assert queue.count == 3
    first = queue.take_full()
    assert [w.app_id for w in first] == [1, 2, 3]
    assert sorted(queue.done(first[:2])) == ["r1"]  # r2 still waits for 3
    assert queue.done(first[2:]) == ["r2"]


def test_an_app_is_flagged_when_any_record_that_brought_it_flagged_it() -> None:
    queue = PartitionQueue(size=4)
    queue.add("r1", 0, [1, 2], now=0.0, flagged=[2])
    queue.add("r2", 0, [1, 3], now=1.0, flagged=[1, 99])  # 99: not of the record, no flag
    taken = queue.take_mixed()
    assert [(w.app_id, w.flagged) for w in taken] == [(1, True), (2, True), (3, False)]
    # The flag went with the request: the app brought again unflagged is not flagged.
    queue.add("r3", 0, [2, 99], now=2.0)
    assert [(w.app_id, w.flagged) for w in queue.take_mixed()] == [(2, False), (99, False)]


def test_an_empty_record_of_a_partition_with_nothing_waiting_is_forgotten() -> None:
    queue = PartitionQueue(size=4)
    queue.add("r1", 1, [10], now=0.0)
    assert queue.add("garbage", 2, [], now=0.5)  # a record that could not be read
    assert [(w.partition, w.app_id) for w in queue.take_mixed()] == [(1, 10)]
    assert queue.oldest() is None and queue.take_mixed() == []


@dataclass
class PartitionEvent:
    value: list[int]
    partition: int

    @property
    def message(self) -> Any:
        return self


@dataclass
class PartitionStream:
    queue: asyncio.Queue[PartitionEvent] = field(default_factory=asyncio.Queue)
    acked: list[list[int]] = field(default_factory=list)

    def feed(self, partition: int, *values: int) -> None:
        self.queue.put_nowait(PartitionEvent(list(values), partition))

    async def events(self) -> AsyncIterator[PartitionEvent]:
        while True:
            yield await self.queue.get()

    async def ack(self, event: PartitionEvent) -> bool:
        self.acked.append(event.value)
        return True


class Requests:
    def __init__(self) -> None:
        self.made: list[tuple[float, list[tuple[int, int]]]] = []
        self.flagged: list[frozenset[int]] = []
        self.hold: asyncio.Event | None = None
        self.fail = False

    async def __call__(self, apps: list[tuple[int, int]], flagged: frozenset[int]) -> None:
        self.made.append((time.monotonic(), apps))
        self.flagged.append(flagged)
        if self.hold is not None:
            await self.hold.wait()
        if self.fail:
            raise RuntimeError("boom")

    def partitions(self) -> list[set[int]]:
        return [{p for p, _ in apps} for _, apps in self.made]


def partition_batcher(stream: PartitionStream, requests: Requests, **kw: Any) -> Any:
    options = {"size": 4, "wait": 0.3, "partitions": 3, "name": "crawl", **kw}
    return PartitionBatcher(stream, process=requests, read=lambda e: e.value, **options)


async def test_a_partition_with_a_full_batch_goes_at_once_alone() -> None:
    stream, requests = PartitionStream(), Requests()
    task = start(partition_batcher(stream, requests, wait=5.0))
    try:
        stream.feed(0, 1, 2)
        stream.feed(1, 10, 11, 12)
        stream.feed(0, 3, 4, 5)
        await settle(lambda: requests.made)
        assert requests.made[0][1] == [(0, 1), (0, 2), (0, 3), (0, 4)]
        await settle(lambda: stream.acked == [[1, 2]])
        await asyncio.sleep(0.2)
        assert len(requests.made) == 1  # the rest waits for more (5 s), not mixed at once
    finally:
        await stop(task)


async def test_a_request_gets_the_apps_its_records_flagged() -> None:
    stream, requests = PartitionStream(), Requests()

    def read(event: PartitionEvent) -> Requested:
        return Requested(event.value, [a for a in event.value if a % 2 == 0])

    options: dict[str, Any] = {"size": 4, "wait": 0.3, "partitions": 3, "name": "crawl"}
    task = start(PartitionBatcher(stream, process=requests, read=read, **options))
    try:
        stream.feed(0, 1, 2)
        stream.feed(0, 3, 4, 5)
        await settle(lambda: len(requests.made) == 2)
        assert [apps for _, apps in requests.made] == [[(0, 1), (0, 2), (0, 3), (0, 4)], [(0, 5)]]
        assert requests.flagged == [frozenset({2, 4}), frozenset()]
    finally:
        await stop(task)
    # A ``read`` that returns plain app ids flags none.
    stream, requests = PartitionStream(), Requests()
    task = start(partition_batcher(stream, requests))
    try:
        stream.feed(1, 2, 4)
        await settle(lambda: requests.made)
        assert requests.flagged == [frozenset()]
    finally:
        await stop(task)


async def test_a_trickle_goes_out_mixed_once_the_wait_is_over_and_the_stream_is_quiet() -> None:
    stream, requests = PartitionStream(), Requests()
    task = start(partition_batcher(stream, requests))
    try:
        began = time.monotonic()
        stream.feed(0, 1)
        stream.feed(1, 10)
        stream.feed(2, 20, 21, 22)
        await settle(lambda: len(requests.made) == 2)
        # One request of 4 (whole partitions, oldest first), then the rest: never one per
        # partition.
        assert [apps for _, apps in requests.made] == [
            [(0, 1), (1, 10), (2, 20), (2, 21)],
            [(2, 22)],
        ]
        assert requests.made[0][0] - began >= 0.3
        await settle(lambda: sorted(stream.acked) == [[1], [10], [20, 21, 22]])
    finally:
        await stop(task)


async def test_while_records_keep_coming_partial_partitions_wait_for_more() -> None:
    stream, requests = PartitionStream(), Requests()
    task = start(partition_batcher(stream, requests, wait=0.1))
    try:
        # A record every 50 ms alternating two partitions: past the wait, but never quiet for
        # IDLE_SECONDS, so both fill up to full requests of their own.
        for n in range(8):
            stream.feed(n % 2, 100 * (n % 2) + n)
            await asyncio.sleep(0.05)
        await settle(lambda: len(requests.made) == 2)
        assert requests.partitions() == [{0}, {1}]
    finally:
        await stop(task)


async def test_read_ahead_stops_at_a_full_batch_per_partition() -> None:
    stream, requests = PartitionStream(), Requests()
    requests.hold = asyncio.Event()
    task = start(partition_batcher(stream, requests, wait=5.0))
    try:
        stream.feed(0, 1, 2, 3, 4)
        await settle(lambda: requests.made)  # held in its request
        for n in range(20):
            stream.feed(1 + n % 2, 10 + n)
        await asyncio.sleep(0.2)
        # Read ahead while the request is processed, up to size x partitions apps waiting.
        assert stream.queue.qsize() == 20 - 12
        requests.hold.set()
        await settle(lambda: stream.queue.qsize() == 0)
    finally:
        await stop(task)


async def test_an_app_never_waits_longer_than_max_age() -> None:
    stream, requests = PartitionStream(), Requests()
    task = start(partition_batcher(stream, requests, wait=0.1, max_age=0.5))
    try:
        began = time.monotonic()
        stream.feed(0, 1)
        for n in range(30):  # never quiet, never full (3 apps), for about 0.9 s
            stream.feed(1, 100 + n % 3)
            await asyncio.sleep(0.03)
        assert requests.made, "no request although app 1 waited past max_age"
        at, apps = requests.made[0]
        assert apps[0] == (0, 1) and at - began >= 0.5
    finally:
        await stop(task)


async def test_a_failing_request_is_logged_and_its_records_acked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream, requests = PartitionStream(), Requests()
    requests.fail = True
    task = start(partition_batcher(stream, requests))
    try:
        stream.feed(0, 1, 2, 3, 4)
        await settle(lambda: stream.acked == [[1, 2, 3, 4]])
        assert "crawl: a request of 4 apps failed; acked" in caplog.text
        assert not task.done()
    finally:
        await stop(task)


async def test_a_request_cut_short_by_a_shutdown_leaves_its_records_unacked() -> None:
    stream, requests = PartitionStream(), Requests()
    task = start(partition_batcher(stream, requests, wait=5.0))
    stream.feed(0, 1, 2, 3, 4)
    await settle(lambda: stream.acked == [[1, 2, 3, 4]])
    requests.hold = asyncio.Event()  # never set: the next request is running at the shutdown
    stream.feed(1, 10, 11, 12, 13)
    stream.feed(2, 20)  # read ahead, waiting
    await settle(lambda: len(requests.made) == 2)
    await stop(task)
    assert stream.acked == [[1, 2, 3, 4]]
