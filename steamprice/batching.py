"""Batches of a Faust stream, each acked once processed: the loops of the sinks and the crawler
(which groups the apps it prices by partition)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

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
    is left unacked, Kafka redelivers it after the restart, and :meth:`run` returns. So is a
    batch whose ``process`` was cancelled (a shutdown): acking it would commit past events that
    were not processed (a crawl batch cut short by SIGTERM was lost that way). Any other error,
    with ``ack_errors`` (Faust's own rule for an agent), is logged and the batch acked, and
    batching goes on; without it, the batch is acked only when ``process`` returned, and the
    error ends :meth:`run` (and so the agent, loudly).
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
        except asyncio.CancelledError:
            stopping = True
            logger.info(
                "Cancelled: %d events of %s not acked, Kafka redelivers them",
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


class Waiting(NamedTuple):
    """An app taken off a :class:`PartitionQueue`: its partition, the records it came in, and
    whether any of them flagged it."""

    partition: int
    app_id: int
    tokens: list[Hashable]
    flagged: bool = False


@dataclass(frozen=True, slots=True)
class Requested:
    """What ``read`` of a :class:`PartitionBatcher` may return: the apps of a record, and those
    of them it flags (for the crawler: re-seeded)."""

    app_ids: Iterable[int]
    flagged: Iterable[int] = ()


class PartitionQueue:
    """Apps waiting for a request, per partition, in arrival order, and the records they came in.

    Pure bookkeeping for :class:`PartitionBatcher`. A record (``token``) is done once every app
    it brought was taken and reported :meth:`done`; an app brought by several records waits once,
    flagged when any of them flagged it.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        # partition -> {app_id: (arrival, tokens)}, in arrival order (dicts keep insertion order)
        self._waiting: dict[int, dict[int, tuple[float, list[Hashable]]]] = {}
        self._flagged: set[int] = set()
        self._left: dict[Hashable, int] = {}
        self.count = 0

    def add(
        self,
        token: Hashable,
        partition: int,
        app_ids: Iterable[int],
        now: float,
        flagged: Iterable[int] = (),
    ) -> bool:
        """Queue the apps of one record (``flagged``: those of them it flags); True when it
        brought none (done at once)."""
        apps = self._waiting.setdefault(partition, {})
        n = 0
        for app_id in dict.fromkeys(app_ids):
            entry = apps.get(app_id)
            if entry is None:
                apps[app_id] = (now, [token])
                self.count += 1
            else:
                entry[1].append(token)
            n += 1
        if n:
            self._left[token] = self._left.get(token, 0) + n
            self._flagged.update(a for a in flagged if a in apps)
        elif not apps:
            del self._waiting[partition]  # an empty record of a partition with nothing waiting
        return n == 0

    def oldest(self) -> float | None:
        """When the app that has waited longest arrived (None: nothing waits)."""
        firsts = [next(iter(apps.values()))[0] for apps in self._waiting.values() if apps]
        return min(firsts) if firsts else None

    def _take(self, partition: int, n: int) -> list[Waiting]:
        apps = self._waiting[partition]
        taken = [Waiting(partition, a, apps[a][1], a in self._flagged) for a in list(apps)[:n]]
        for w in taken:
            del apps[w.app_id]
            self._flagged.discard(w.app_id)
        if not apps:
            del self._waiting[partition]
        self.count -= len(taken)
        return taken

    def take_full(self) -> list[Waiting]:
        """``size`` apps of one partition, of the full partition that has waited longest."""
        full = [
            (next(iter(apps.values()))[0], p)
            for p, apps in self._waiting.items()
            if len(apps) >= self.size
        ]
        return self._take(min(full)[1], self.size) if full else []

    def take_mixed(self) -> list[Waiting]:
        """Up to ``size`` apps of any partitions: whole partitions, the longest waiting first."""
        order = sorted((next(iter(apps.values()))[0], p) for p, apps in self._waiting.items())
        out: list[Waiting] = []
        for _, partition in order:
            if len(out) >= self.size:
                break
            out.extend(self._take(partition, self.size - len(out)))
        return out

    def done(self, taken: Iterable[Waiting]) -> list[Hashable]:
        """Report taken apps priced (or given up); the records that have nothing left."""
        finished = []
        for w in taken:
            for token in w.tokens:
                left = self._left[token] - 1
                if left:
                    self._left[token] = left
                else:
                    del self._left[token]
                    finished.append(token)
        return finished


class PartitionBatcher:
    """Requests of ``size`` apps of one partition each, when the volume allows; acks per record.

    Records (each: apps of one partition) are read ahead while a request is processed, up to
    ``size`` apps per partition in all (so when the read-ahead is full, some partition has a full
    request). A partition with ``size`` apps waiting makes a request of its own. A trickle (a few
    seeds) costs no more requests than batching regardless of partitions: once the oldest app
    has waited ``wait`` seconds and the stream has nothing more to give (no record for
    ``IDLE_SECONDS``), whatever waits goes out, partitions mixed, ``size`` apps per request. An
    app never waits longer than ``max_age`` (a mixed request takes it then). Requests are
    processed one at a time (``process`` gets the ``(partition, app_id)`` pairs and the apps of
    them that a record flagged: ``read`` returns a :class:`Requested` to flag some); a record is
    acked once every app it brought was processed. An error
    of ``process`` is logged and its apps count as processed (Faust's rule for an agent); a
    request cancelled by a shutdown does not: its records stay unacked (with every record read
    ahead) and Kafka redelivers them after the restart.
    """

    IDLE_SECONDS = 0.2

    def __init__(
        self,
        stream: Any,
        size: int,
        wait: float,
        process: Callable[[list[tuple[int, int]], frozenset[int]], Awaitable[object]],
        read: Callable[[Any], Iterable[int] | Requested],
        *,
        partitions: int,
        max_age: float = 300.0,
        name: str = "",
    ) -> None:
        self.stream = stream
        self.queue = PartitionQueue(size)
        self.wait = wait
        self.process = process
        self.read = read
        self.cap = size * partitions
        self.max_age = max(max_age, wait)
        self.name = name or getattr(process, "__qualname__", "batch")
        self._events: dict[Hashable, Any] = {}
        self._changed = asyncio.Event()
        self._room = asyncio.Event()
        # Since when the reader waits for the stream (None: it is handling a record, or full).
        self._idle_since: float | None = None

    async def run(self) -> None:
        tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._work())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self) -> None:
        self._idle_since = time.monotonic()
        async for event in self.stream.events():
            self._idle_since = None
            token = id(event)
            self._events[token] = event
            flagged: Iterable[int] = ()
            try:
                got = self.read(event)
                if isinstance(got, Requested):
                    app_ids, flagged = list(got.app_ids), list(got.flagged)
                else:
                    app_ids = list(got)
            except Exception:
                logger.exception("%s: a record could not be read; acked", self.name)
                app_ids, flagged = [], ()
            partition = event.message.partition
            if self.queue.add(token, partition, app_ids, time.monotonic(), flagged):
                await self._ack([token])
            while self.queue.count >= self.cap:
                self._changed.set()
                self._room.clear()
                await self._room.wait()
            self._idle_since = time.monotonic()
            self._changed.set()

    def _next(self, now: float) -> tuple[list[Waiting], float | None]:
        """The next request, or nothing and how long to wait at most before looking again."""
        taken = self.queue.take_full()
        if taken:
            return taken, None
        oldest = self.queue.oldest()
        if oldest is None:
            return [], None
        idle = self._idle_since
        if now - oldest >= self.max_age or (
            now - oldest >= self.wait and idle is not None and now - idle >= self.IDLE_SECONDS
        ):
            return self.queue.take_mixed(), None
        deadlines = [oldest + self.max_age]
        if now - oldest < self.wait:
            deadlines.append(oldest + self.wait)
        elif idle is not None:
            deadlines.append(idle + self.IDLE_SECONDS)
        return [], max(min(deadlines) - now, 0.005)

    async def _work(self) -> None:
        while True:
            taken, timeout = self._next(time.monotonic())
            if not taken:
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout)
                except TimeoutError:
                    pass
                continue
            self._room.set()
            try:
                await self.process(
                    [(w.partition, w.app_id) for w in taken],
                    frozenset(w.app_id for w in taken if w.flagged),
                )
            except asyncio.CancelledError:
                logger.info(
                    "Cancelled: a request of %d apps of %s not acked, Kafka redelivers it",
                    len(taken),
                    self.name,
                )
                raise
            except Exception:
                logger.exception("%s: a request of %d apps failed; acked", self.name, len(taken))
            await self._ack(self.queue.done(taken))

    async def _ack(self, tokens: Iterable[Hashable]) -> None:
        for token in tokens:
            await self.stream.ack(self._events.pop(token))
