"""The batch loop of the sinks and the crawler, driven by a stand-in stream (no broker)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from steamprice.batching import Batcher
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


def start(batcher: Batcher) -> asyncio.Future[None]:
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


@pytest.mark.parametrize(("ack_errors", "acked"), [(False, []), (True, [1, 2])])
async def test_a_batch_cut_short_by_a_shutdown_is_acked_only_with_ack_errors(
    ack_errors: bool, acked: list[int]
) -> None:
    stream = Stream()
    record = Recorder(stream)
    record.hold = asyncio.Event()  # never set: processing is still running at the shutdown
    task = start(Batcher(stream, size=2, wait=5.0, process=record, ack_errors=ack_errors))
    stream.feed(1, 2)
    await settle(lambda: record.batches)
    await stop(task)
    assert stream.acked == acked


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
