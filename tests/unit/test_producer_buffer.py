"""The buffer of table writes (``kafka.ProducerBuffer``): counted waits instead of polled ones.

The buffer runs as the worker runs it (a started mode service with its sending task); only the
Kafka producer behind it is a stand-in, whose sends the tests release one by one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

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
