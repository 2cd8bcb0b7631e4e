"""Batches of a Faust stream, each acked once processed: the loop of the sinks and the crawler."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)


class Batcher:
    """Batches of events, closed when full or ``wait`` seconds after their *first* event.

    Faust's ``take`` closes batches on a fixed cycle instead, so a burst that straddles a cycle
    boundary goes out as two batches where one would do (for the crawler, two Steam requests per
    region out of a budget of ~200 per 5 minutes). ``process`` gets each batch's values; its
    events are acked only afterwards (at-least-once: a crash redelivers them), so the stream must
    not ack by itself (``stream.noack()``). While a batch is processed no event is read
    (backpressure), and batches are processed one at a time, in order.

    When ``process`` raises one of ``stop_on`` (the resource it writes to is stopping), the batch
    is left unacked, Kafka redelivers it after the restart, and :meth:`run` returns. Any other
    error, with ``ack_errors`` (Faust's own rule for an agent), is logged and the batch acked,
    even when cancelled (a shutdown), and batching goes on; without it, the batch is acked only
    when ``process`` returned, and the error ends :meth:`run` (and so the agent, loudly).
    """

    def __init__(
        self,
        stream: Any,
        size: int,
        wait: float,
        process: Callable[[Sequence[Any]], Awaitable[object]],
        *,
        ack_errors: bool = True,
        stop_on: tuple[type[BaseException], ...] = (),
        name: str = "",
    ) -> None:
        self.stream = stream
        self.size = size
        self.wait = wait
        self.process = process
        self.ack_errors = ack_errors
        self.stop_on = stop_on
        self.name = name or getattr(process, "__qualname__", "batch")
        self._events: list[Any] = []
        self._first_at = 0.0
        # Held while a batch is processed: the stream is not read meanwhile (backpressure).
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        """Batch until the stream ends, a ``stop_on`` error, or an error not acked."""
        tasks = [
            asyncio.ensure_future(self._read()),
            asyncio.ensure_future(self._flush_when_due()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                try:
                    task.result()
                except self.stop_on:
                    return
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self) -> None:
        async for event in self.stream.events():
            async with self._lock:
                if not self._events:
                    self._first_at = time.monotonic()
                self._events.append(event)
                if len(self._events) >= self.size:
                    await self._flush()

    async def _flush_when_due(self) -> None:
        while True:
            if self._events:
                delay = self._first_at + self.wait - time.monotonic()
            else:
                delay = self.wait
            await asyncio.sleep(max(delay, 0.005))
            async with self._lock:
                if self._events and time.monotonic() - self._first_at >= self.wait:
                    await self._flush()

    async def _flush(self) -> None:
        events, self._events = self._events, []
        processed = stopping = False
        try:
            await self.process([e.value for e in events])
            processed = True
        except self.stop_on:
            stopping = True
            logger.info(
                "Stopping: %d events of %s not processed, Kafka redelivers them",
                len(events),
                self.name,
            )
            raise
        except Exception:
            if not self.ack_errors:
                logger.error(
                    "%s: a batch of %d events failed; not acked, the agent stops",
                    self.name,
                    len(events),
                )
                raise
            # Like a Faust agent: log and ack rather than stop for good.
            logger.exception("%s: a batch of %d events failed; acked", self.name, len(events))
        finally:
            if processed or (self.ack_errors and not stopping):
                for event in events:
                    await self.stream.ack(event)
