"""The sinks (MySQL price_current, price_changes, the Discord ledger): ack only after commit.

Each sink hands a batch to its writer and acks the batch's events only once the write returned
(the transaction committed); a write interrupted by shutdown (``DatabaseStopping``) acks
nothing, so Kafka redelivers the batch to the next worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from steamprice.batches import ObservedBatch, observed_record, read_observed
from steamprice.database import DatabaseStopping
from steamprice.sinks import discord as discord_sink
from steamprice.sinks import mysql as mysql_sink
from tests.support.agents import FakeService, FakeWriter, acked, processed, stopped
from tests.support.records import T, observation, price_change


@dataclass
class Sink:
    agent: Any
    record: Callable[[int], Any]
    patch: Callable[[pytest.MonkeyPatch, FakeWriter], None]
    # What the writer receives for a record (price_current: the decoded batch).
    written: Callable[[Any], Any] = lambda record: record


def _mysql(writer_name: str) -> Callable[[pytest.MonkeyPatch, FakeWriter], None]:
    def patch(monkeypatch: pytest.MonkeyPatch, writer: FakeWriter) -> None:
        monkeypatch.setattr(mysql_sink, "database", FakeService())
        monkeypatch.setattr(mysql_sink, writer_name, writer.write)

    return patch


def _discord(monkeypatch: pytest.MonkeyPatch, writer: FakeWriter) -> None:
    monkeypatch.setattr(discord_sink, "database", FakeService())
    monkeypatch.setattr(discord_sink, "notifier", FakeService(enqueue=writer.write))


SINKS = {
    "price_current": Sink(
        mysql_sink.sink_price_current,
        lambda n: observed_record(
            ObservedBatch("us", T, f"o{n}", [observation(app_id=n, obs_id=f"o{n}")], [True])
        ),
        _mysql("write_batches"),
        partial(read_observed, news_only=True),
    ),
    "price_changes": Sink(
        mysql_sink.sink_price_changes,
        lambda n: price_change(app_id=n, event_id=f"e{n}"),
        _mysql("write_changes"),
    ),
    "discord": Sink(
        discord_sink.sink_discord,
        lambda n: price_change(app_id=n, event_id=f"e{n}"),
        _discord,
    ),
}


@pytest.fixture(params=list(SINKS))
def sink(request: pytest.FixtureRequest) -> Sink:
    return SINKS[request.param]


@pytest.fixture
def writer(sink: Sink, monkeypatch: pytest.MonkeyPatch) -> FakeWriter:
    w = FakeWriter(gate=asyncio.Event())
    sink.patch(monkeypatch, w)
    return w


async def test_a_batch_is_acked_only_once_its_write_returned(
    sink: Sink, writer: FakeWriter
) -> None:
    async with sink.agent.test_context() as agent:
        events = [await agent.put(sink.record(n), key=n) for n in (1, 2, 3)]
        await writer.wait_for_batches(1)
        assert writer.batches == [[sink.written(sink.record(n)) for n in (1, 2, 3)]]
        assert acked(events) == [False] * 3  # the write is still in progress

        assert writer.gate is not None
        writer.gate.set()
        for event in events:
            await processed(event)
        assert writer.returned == 1


async def test_each_batch_is_acked_after_its_own_write(sink: Sink, writer: FakeWriter) -> None:
    assert writer.gate is not None
    writer.gate.set()
    async with sink.agent.test_context() as agent:
        first = [await agent.put(sink.record(n), key=n) for n in (1, 2)]
        for event in first:
            await processed(event)

        writer.gate.clear()
        second = await agent.put(sink.record(3), key=3)
        await writer.wait_for_batches(2)
        assert acked([second]) == [False]
        writer.gate.set()
        await processed(second)
    written = [sink.written(sink.record(n)) for n in (1, 2, 3)]
    assert writer.batches == [written[:2], written[2:]]


async def test_a_write_stopped_by_shutdown_acks_nothing(sink: Sink, writer: FakeWriter) -> None:
    assert writer.gate is not None
    writer.error = DatabaseStopping()
    writer.gate.set()
    async with sink.agent.test_context() as agent:
        events = [await agent.put(sink.record(n), key=n) for n in (1, 2, 3)]
        await writer.wait_for_batches(1)
        await stopped(agent)  # the sink returned: it takes and acks nothing more
        assert acked(events) == [False] * 3
    assert acked(events) == [False] * 3  # not at shutdown either
    assert writer.returned == 0


async def test_records_waiting_in_memory_for_the_mysql_sink_are_bounded() -> None:
    """Its stream holds at most 256 records of up to 100 observations, not Faust's 4,096: a
    first sweep that outran MySQL held ~2,000 decoded records (about 200 MB) in the worker."""
    from steamprice.app import app
    from steamprice.topics import prices_normalized_topic

    queue = prices_normalized_topic.clone(is_iterator=True).queue
    assert queue.maxsize == 256 < app.conf.stream_buffer_maxsize
