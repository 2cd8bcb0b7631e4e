"""The parts of ``steamprice.kafka`` that need no broker: commit offsets, leftovers of a batch,
stuck commits, the subscription wait, deliveries to the conductor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st
from mode import Service
from mode.utils.locks import Event

from steamprice import kafka
from steamprice.app import app, settings
from steamprice.kafka import (
    ConsumerThread,
    Resumed,
    committable,
    led,
    skip_to,
    stalled_at,
    undelivered,
)


def test_commits_the_run_of_acked_offsets_that_starts_at_the_committed_one() -> None:
    acked = [10, 11, 12, 14, 15]
    assert committable(acked, 10) == [10, 11, 12]
    assert acked == [14, 15]  # kept for later


def test_commits_nothing_while_the_committed_offset_itself_is_unacked() -> None:
    # Faust would commit 12 here (it allows a difference of one), past message 10 in flight.
    acked = [11]
    assert committable(acked, 10) == []
    assert acked == [11]
    assert committable([12, 13], 10) == []


def test_commits_from_anywhere_before_the_first_commit() -> None:
    assert committable([3, 4, 6], None) == [3, 4]
    assert committable([], 5) == []


@given(
    st.integers(0, 1000),
    st.sets(st.integers(0, 1100), max_size=60),
)
def test_never_commits_past_an_unacked_offset(committed: int, acked_set: set[int]) -> None:
    acked = sorted(o for o in acked_set if o >= committed)
    batch = committable(list(acked), committed)
    if batch:
        assert batch[0] == committed
        new = batch[-1] + 1
        assert set(range(committed, new)) <= set(acked)


def test_undelivered_is_what_follows_the_last_delivered_offset() -> None:
    assert undelivered([5, 6, 7, 8], 6) == [7, 8]
    assert undelivered([5, 6, 7, 8], None) == [5, 6, 7, 8]
    assert undelivered([5, 6], 6) == []


def test_stuck_when_a_later_offset_is_acked_but_not_the_committed_one() -> None:
    assert stalled_at(100, acked=[105, 106], in_flight=[], position=107, queued=False) == 100
    # ... or a later one is being handled (a partition's messages are taken in order)
    assert stalled_at(100, acked=[], in_flight=[101], position=120, queued=True) == 100


def test_not_stuck_while_the_committed_offset_is_acked_or_handled() -> None:
    assert stalled_at(100, acked=[100, 101], in_flight=[], position=102, queued=False) is None
    assert stalled_at(100, acked=[101], in_flight=[100], position=102, queued=False) is None


def test_stuck_when_read_past_with_nothing_in_flight_or_queued() -> None:
    assert stalled_at(100, acked=[], in_flight=[], position=130, queued=False) == 100
    # queued messages of the partition will be handled: wait for them
    assert stalled_at(100, acked=[], in_flight=[], position=130, queued=True) is None
    # nothing read beyond the committed offset: simply caught up
    assert stalled_at(100, acked=[], in_flight=[], position=100, queued=False) is None
    assert stalled_at(100, acked=[], in_flight=[], position=None, queued=False) is None
    assert stalled_at(None, acked=[5], in_flight=[], position=9, queued=False) is None


def test_stuck_commits_are_read_again_first() -> None:
    assert skip_to(100, log_start=0, read_again=False, present=105) is None
    assert skip_to(100, log_start=None, read_again=False, present=105) is None  # broker away


def test_stuck_commits_move_on_only_when_the_message_cannot_come() -> None:
    assert skip_to(100, log_start=250, read_again=False, present=260) == (
        250,
        "deleted by retention",
    )
    # read again once and still missing: no message there (a transaction marker)
    assert skip_to(100, log_start=0, read_again=True, present=101) == (
        101,
        "which holds no message",
    )
    assert skip_to(100, log_start=0, read_again=True, present=100)[0] == 101  # type: ignore[index]


class Cluster:
    """aiokafka's ClusterMetadata as ``led`` reads it: partitions, and those with a leader."""

    def __init__(self, partitions: dict[str, set[int]], leaders: dict[str, set[int]]) -> None:
        self.partitions, self.leaders = partitions, leaders

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)

    def available_partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.leaders.get(topic)


class Client:
    def __init__(self, *views: Cluster) -> None:
        self.views = list(views)
        self.calls = 0

    async def fetch_all_metadata(self) -> Cluster:
        self.calls += 1
        return self.views[min(self.calls, len(self.views)) - 1]


def thread_with(client: Client) -> ConsumerThread:
    thread = object.__new__(ConsumerThread)
    thread._ensure_consumer = lambda: SimpleNamespace(_client=client)  # type: ignore[method-assign]
    thread.log = logging.getLogger("steamprice.kafka")  # type: ignore[assignment]
    return thread


async def test_the_worker_consumer_asks_the_broker_to_gather_its_fetches() -> None:
    """Faust's consumer asks for 1 byte: every fetch of a busy worker came back with a record or
    two. The worker's asks for the app's ``fetch_min_bytes``, waiting at most ``fetch_wait``."""
    fetching = kafka.App("fetch-test", broker="kafka://127.0.0.1:1", fetch_wait=0.3)
    consumer = fetching.consumer.thread._create_worker_consumer(fetching.transport)
    assert consumer._fetch_min_bytes == kafka.FETCH_MIN_BYTES == 1 << 20
    assert consumer._fetch_max_wait_ms == 300
    assert app.fetch_wait == settings.fetch_wait_ms / 1000 == kafka.FETCH_WAIT_SECONDS
    assert app.fetch_min_bytes == settings.fetch_min_bytes == kafka.FETCH_MIN_BYTES


def test_a_topic_is_led_when_every_partition_has_a_leader() -> None:
    cluster = Cluster({"a": {0, 1}, "b": {0, 1}, "c": set()}, {"a": {0, 1}, "b": {0}, "c": set()})
    assert [led(cluster, t) for t in ("a", "b", "c", "d")] == [True, False, False, False]


async def test_a_subscription_waits_for_the_leaders_of_topics_just_created(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka, "SUBSCRIBE_POLL_SECONDS", 0.0)
    both = {"a": {0, 1}, "b": {0, 1}}
    client = Client(
        Cluster({"a": {0, 1}}, {"a": {0, 1}}),  # b not created yet
        Cluster(both, {"a": {0, 1}, "b": set()}),  # created, no leaders yet
        Cluster(both, both),
    )
    await thread_with(client)._until_led({"a", "b"})
    assert client.calls == 3


async def test_a_topic_that_never_gets_leaders_is_subscribed_to_anyway(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kafka, "SUBSCRIBE_POLL_SECONDS", 0.0)
    monkeypatch.setattr(kafka, "SUBSCRIBE_WAIT_SECONDS", 0.05)
    client = Client(Cluster({"a": {0}}, {"a": {0}}))
    with caplog.at_level(logging.WARNING):
        await thread_with(client)._until_led({"a", "gone"})
    assert client.calls > 1
    assert "Subscribing to gone without partition leaders after 0 s" in caplog.text


class Deliverer(Service):
    """What ``Consumer._deliver`` uses of a consumer: ``wait_first`` and ``suspend_flow``."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = Event()

    async def deliver(self, callback: Any, message: str) -> None:
        await kafka.Consumer._deliver(cast(Any, self), callback, cast(Any, message))


@pytest.fixture
async def deliverer() -> AsyncIterator[Deliverer]:
    service = Deliverer()
    await service.start()
    yield service
    await service.stop()


@contextmanager
def tasks_created() -> Iterator[list[object]]:
    """Every task created on the running loop inside the block."""
    loop = asyncio.get_running_loop()
    created: list[object] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        created.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        yield created
    finally:
        loop.set_task_factory(None)


async def test_a_delivery_that_does_not_wait_runs_at_once_without_a_task(
    deliverer: Deliverer,
) -> None:
    got = []

    async def conductor(message: str) -> None:
        got.append(message)

    with tasks_created() as created:
        for message in ("a", "b"):
            await deliverer.deliver(conductor, message)
    assert got == ["a", "b"]
    assert created == []  # Faust's race made four per message


async def test_a_delivery_that_waits_is_finished_in_faust_s_race(deliverer: Deliverer) -> None:
    loop = asyncio.get_running_loop()
    room = loop.create_future()
    got = []

    async def conductor(message: str) -> None:
        got.append(await room)  # a full agent queue
        await asyncio.sleep(0)
        got.append(message)

    loop.call_later(0.01, room.set_result, "room")
    await deliverer.deliver(conductor, "a")
    assert got == ["room", "a"]


async def test_a_suspended_flow_cancels_a_delivery_that_waits(deliverer: Deliverer) -> None:
    seen: list[str] = []

    async def conductor(message: str) -> None:
        try:
            await asyncio.get_running_loop().create_future()  # never room
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    asyncio.get_running_loop().call_later(0.01, deliverer.suspend_flow.set)
    await asyncio.wait_for(deliverer.deliver(conductor, "a"), 5)
    await asyncio.sleep(0)  # the cancellation reaches the coroutine
    assert seen == ["cancelled"]


async def test_a_delivery_s_error_reaches_the_drain_loop_before_or_after_a_wait(
    deliverer: Deliverer,
) -> None:
    async def at_once(message: str) -> None:
        raise ValueError(message)

    async def later(message: str) -> None:
        await asyncio.sleep(0.001)
        raise KeyError(message)

    with pytest.raises(ValueError, match="a"):
        await deliverer.deliver(at_once, "a")
    with pytest.raises(KeyError, match="b"):
        await deliverer.deliver(later, "b")


async def test_a_resumed_coroutine_returns_its_value_and_takes_a_throw() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    second: asyncio.Future[str] = loop.create_future()

    async def work() -> str:
        try:
            await first
        except LookupError:
            return await second + " after the error"
        return "no error"

    coro = work()
    task: asyncio.Future[str] = asyncio.ensure_future(Resumed(coro, coro.send(None)))
    first.set_exception(LookupError())
    await asyncio.sleep(0)
    second.set_result("value")
    assert await task == "value after the error"


async def test_no_partition_is_judged_stuck_while_a_commit_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A commit takes the offsets it commits off the acked ones, then waits for the table writes
    to reach Kafka: until the broker answers they are neither acked nor in flight. Judged then,
    they were read again as lost (twice the work, and "which no agent got" in the log)."""
    stalls = kafka.App("stall-test", broker="kafka://127.0.0.1:1")
    consumer = cast(Any, stalls.consumer)
    tp = TP("stall-test.schedule", 2)
    recovered: list[tuple[TP, int]] = []

    async def positions(tps: list[TP]) -> dict[TP, int]:
        return {tp: 4}

    async def recover(tp: TP, offset: int, present: int) -> None:
        recovered.append((tp, offset))

    monkeypatch.setattr(consumer, "_thread", SimpleNamespace(positions=positions))
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    monkeypatch.setattr(consumer, "_is_stream_tp", lambda _: True)
    monkeypatch.setattr(consumer, "_recover", recover)
    stalls.flow_control.resume()
    consumer._committed_offset[tp] = 3  # offset 3 acked, taken by the commit that runs
    consumer._commit_fut = asyncio.get_running_loop().create_future()
    for _ in range(3):
        await consumer._check_stalls()
    assert recovered == []
    consumer._commit_fut = None  # the commit never came back: now it is judged
    for _ in range(2):
        await consumer._check_stalls()
    assert recovered == [(tp, 3)]
