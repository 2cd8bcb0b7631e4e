"""The crawl agent's batcher, driven by a stand-in stream (no broker)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

from steamprice.agents.crawl import Batcher


@dataclass
class Event:
    value: int


@dataclass
class Stream:
    """Yields events as the test feeds them; records acks."""

    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    acked: list[int] = field(default_factory=list)

    async def events(self) -> AsyncIterator[Event]:
        while True:
            yield await self.queue.get()

    async def ack(self, event: Event) -> bool:
        self.acked.append(event.value)
        return True


class Recorder:
    def __init__(self, stream: Stream, fail: bool = False) -> None:
        self.stream = stream
        self.fail = fail
        self.batches: list[tuple[float, list[int], list[int]]] = []

    async def __call__(self, values: Sequence[int]) -> None:
        # What was acked when processing began: nothing of this batch may be.
        self.batches.append((time.monotonic(), list(values), list(self.stream.acked)))
        if self.fail:
            raise RuntimeError("boom")


async def settle(condition: object, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_a_batch_closes_wait_seconds_after_its_first_event_not_on_a_cycle() -> None:
    stream = Stream()
    record = Recorder(stream)
    task = asyncio.ensure_future(Batcher(stream, size=100, wait=0.3, process=record).run())
    try:
        await asyncio.sleep(0.2)  # idle first: a fixed cycle would close right after this
        first = time.monotonic()
        for v in (1, 2):
            stream.queue.put_nowait(Event(v))
        await asyncio.sleep(0.15)  # a straggler, well within the wait
        stream.queue.put_nowait(Event(3))
        await settle(lambda: record.batches)
        closed_at, values, acked_before = record.batches[0]
        assert values == [1, 2, 3] and acked_before == []
        assert closed_at - first >= 0.3
        await settle(lambda: stream.acked == [1, 2, 3])
    finally:
        task.cancel()


async def test_a_full_batch_goes_at_once_and_the_rest_waits_its_turn() -> None:
    stream = Stream()
    record = Recorder(stream)
    task = asyncio.ensure_future(Batcher(stream, size=3, wait=5.0, process=record).run())
    try:
        for v in range(1, 8):
            stream.queue.put_nowait(Event(v))
        await settle(lambda: len(record.batches) == 2)
        assert [b[1] for b in record.batches] == [[1, 2, 3], [4, 5, 6]]
        assert record.batches[1][2] == [1, 2, 3]  # the first batch was acked before the next
        assert stream.acked == [1, 2, 3, 4, 5, 6]  # 7 waits for more or for its 5 s
    finally:
        task.cancel()


async def test_a_failing_batch_is_logged_and_acked(caplog: pytest.LogCaptureFixture) -> None:
    stream = Stream()
    record = Recorder(stream, fail=True)
    task = asyncio.ensure_future(Batcher(stream, size=2, wait=0.1, process=record).run())
    try:
        for v in (1, 2, 3):
            stream.queue.put_nowait(Event(v))
        await settle(lambda: stream.acked == [1, 2, 3])
        assert [b[1] for b in record.batches] == [[1, 2], [3]]
        assert "Crawl batch of 2 requests failed" in caplog.text
        assert not task.done()  # still crawling
    finally:
        task.cancel()
