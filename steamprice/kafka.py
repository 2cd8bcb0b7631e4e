"""A Kafka consumer that does not lose messages around a rebalance (faust-streaming 0.15.3 does).

Measured on the real broker with two workers (one joining, then one killed mid-stream) and an
agent recording every offset it sees: Faust's own consumer left between 0 and 73 of 12,000
messages unprocessed per run, and commits moved past them (faust-streaming#216, #221, #596).
What loses them, and what this module does about it (Faust's logic is otherwise left alone):

* **Messages skipped and acked.** A stream that takes a message off its queue while the app's
  flow control is suspended, or from an older generation, skips it *and acks it*. Recovery
  resumes the flow only after its seek to the committed offsets, so the first messages after a
  rebalance can go this way. Here such an ack (of a message no stream took) is not recorded.
* **Records fetched, then dropped.** Faust drops the rest of a batch when the flow stops, the
  generation changes or its fetcher task is restarted, and the records of partitions that are
  not active when it gets to them; aiokafka's position is past them by then. aiokafka also takes
  the *empty* set of partitions Faust sometimes passes for "every partition". Here a fetch asks
  for a snapshot of the set and for nothing when it is empty, and a stream partition with
  records left over after a batch is sought back to the first of them, unless a seek moved it.
* **Read offsets fooled by a seek.** Faust seeks the stream partitions to their committed
  offsets while its drain loop goes on with records fetched from the old position. Its read
  offsets then drop the re-read messages as duplicates ("DROPPED MESSAGE", hundreds per
  rebalance) and ack the offsets in between as a gap. Here stream messages are never dropped
  (a duplicate is harmless: every step is idempotent), and a jump in offsets is never taken for
  a gap; only the broker's log start offset (retention) is, below.
* **Whatever is left** shows up one way: a partition's commits stop at an offset that is neither
  acked nor being processed, while a later one is, or while the consumer has read past it and
  nothing of the partition is queued or in flight. A check every few seconds finds such
  partitions (the same offset twice in a row, no rebalance going on) and seeks them back to it.
  Commits move past the offset instead when its message cannot come: retention deleted it, or
  it was read again once and still did not arrive (a transaction marker, say).

And an offset is committed only once every offset from the last commit on was acked (Faust's
check lets one unacked offset through, which a crash would then lose).

Table writes wait in Faust's producer buffer for the Kafka producer. Its waits polled with
0.1 s timeouts: a commit could return with writes still queued, and during a first sweep
deliveries were held back long enough for the check above to read messages again that were
only waiting. :class:`ProducerBuffer` counts instead (a flush waits for every write queued before
it), and the check judges no partition while the buffer holds a delivery back or a commit runs.
It also hands table writes to the producer as one record batch per changelog partition, not one
by one. And the Kafka producer keeps the metadata of every topic it sends to
(:func:`track_sent_topics`): aiokafka could drop a changelog topic's while a write for it was
queued, which then waited 20 minutes for a leader, and every commit with it.

All of this reaches into private internals of faust-streaming and aiokafka, so it holds for the
exact versions it was proven against (:data:`PROVEN_WITH`, the pins of pyproject.toml): a worker
refuses to start with any other (:class:`Worker`) unless ``ALLOW_UNTESTED_FAUST`` says so, and
``tests/unit/test_kafka_guard.py`` names every private method and attribute used here.

The app also gives a worker its identity (``steamprice.local_state``): it locks its data
directory, joins the group as a static member when asked (a restarted worker takes its
partitions back at once), refuses to join with the static id of another live worker, and stops
with one line, not a traceback, when its local table state disagrees with the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Generator, Iterable, Mapping, Set
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from types import MethodType
from typing import Any, cast

import faust
from aiokafka.protocol.admin import DescribeGroupsRequest
from aiokafka.protocol.group import JoinGroupRequest
from aiokafka.structs import RecordMetadata
from faust.exceptions import ConsistencyError
from faust.tables import TableManager as FaustTableManager
from faust.tables.base import Collection
from faust.tables.recovery import E_PERSISTED_OFFSET
from faust.tables.recovery import Recovery as FaustRecovery
from faust.transport.conductor import Conductor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka
from faust.transport.producer import ProducerBuffer as FaustProducerBuffer
from faust.types import TP, Message
from faust.types.tuples import FutureMessage, PendingMessage
from faust.utils.functional import consecutive_numbers
from mode import Service

from steamprice.local_state import (
    DataDirInUse,
    DataDirLock,
    Member,
    ahead_of_changelog,
    conflict,
    conflict_message,
    consistency_message,
    instance_id,
    last_member_id,
    remember_member_id,
)
from steamprice.logs import fatal
from steamprice.runtime import tune_garbage_collector

logger = logging.getLogger(__name__)

# How often partitions are checked for commits stuck at a lost offset.
STALL_CHECK_SECONDS = 5.0
# Table writes waiting for the Kafka producer before the conductor holds deliveries back: twice
# the writes of the largest record (a schedule record of 1,000 apps), where Faust's 100 had it
# wait after nearly every batch record. Then it waits until half have gone.
BUFFER_MESSAGES = 2000
# At most one log line per this many seconds says deliveries were held back.
BUFFER_LOG_SECONDS = 60.0
# Most table writes the buffer hands to the Kafka producer in one go (grouped by partition).
# aiokafka queues one batch per partition and makes the next one wait until that one is sent,
# so a round is about what one produce request carries: with rounds of 1,000 (and 16 kB
# batches) the buffer fell tens of thousands of writes behind a first sweep, and the conductor
# held every delivery meanwhile (19 s of a 35 s end-to-end run). The worker's producer builds
# batches of up to 512 kB (app.py), which hold a partition's share of a round.
BUFFER_ROUND_MESSAGES = 10000
# How long a subscription waits for the partition leaders of topics just created (then it goes
# ahead, and the consumer's metadata refresh takes the topic on later, with a rebalance).
SUBSCRIBE_WAIT_SECONDS = 15.0
SUBSCRIBE_POLL_SECONDS = 0.1
# How the worker's consumer fetches (Kafka's fetch.max.wait.ms and fetch.min.bytes): the broker
# answers once it has this many bytes for the worker, or after this long.
FETCH_WAIT_SECONDS = 0.25
FETCH_MIN_BYTES = 1 << 20
# The releases whose internals this module was proven against (rebalance and fault suites).
PROVEN_WITH = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


class UntestedVersions(RuntimeError):
    """faust-streaming or aiokafka is not the release this module was proven against."""


def installed_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PROVEN_WITH:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_versions(allow_untested: bool, installed: Mapping[str, str | None]) -> str | None:
    """None when ``installed`` are the proven releases; else the reason, as one line.

    Raises :class:`UntestedVersions` with it unless ``allow_untested``; then the caller warns.
    """
    untested = [
        f"{name} {installed.get(name) or '(missing)'}"
        for name, version in PROVEN_WITH.items()
        if installed.get(name) != version
    ]
    if not untested:
        return None
    proven = " and ".join(f"{name} {version}" for name, version in PROVEN_WITH.items())
    line = (
        f"the Kafka consumer fix (steamprice/kafka.py) was proven with {proven}, "
        f"not {' and '.join(untested)}"
    )
    if not allow_untested:
        raise UntestedVersions(
            f"{line}: refusing to start (ALLOW_UNTESTED_FAUST=true starts anyway)"
        )
    return line


def committable(acked: list[int], committed: int | None) -> list[int]:
    """The acked offsets (sorted) that can be committed now, removed from ``acked``.

    ``committed`` is the next offset to read. Nothing is committed while that offset itself is
    unacked: Faust allows a difference of one there, committing past a message still in flight.
    """
    if not acked or (committed is not None and acked[0] > committed):
        return []
    batch = list(next(consecutive_numbers(acked)))
    del acked[: len(batch)]
    return batch


def undelivered(offsets: Iterable[int], last_delivered: int | None) -> list[int]:
    """The offsets of a fetched batch (in order) after the last one delivered."""
    return [o for o in offsets if last_delivered is None or o > last_delivered]


def stalled_at(
    committed: int | None,
    acked: Iterable[int],
    in_flight: Iterable[int],
    position: int | None,
    queued: bool,
) -> int | None:
    """The offset a partition's commits are stuck at because its message was lost, or None.

    ``committed`` is the next offset to read; ``acked`` the offsets acked since the last commit;
    ``in_flight`` those taken by a stream and not acked yet; ``position`` the next offset the
    consumer will fetch; ``queued`` whether a stream queue holds messages of the partition.
    A partition's messages are taken off its queue in order, so the committed offset was lost
    when it is neither acked nor in flight while a later one is; or when nothing is in flight
    or queued although the consumer has read past it.
    """
    if committed is None:
        return None
    acked, in_flight = set(acked), set(in_flight)
    if committed in acked or committed in in_flight:
        return None
    if any(offset > committed for offset in acked | in_flight):
        return committed
    if not in_flight and not queued and position is not None and position > committed:
        return committed
    return None


def skip_to(
    offset: int, log_start: int | None, read_again: bool, present: int
) -> tuple[int, str] | None:
    """Where commits stuck at ``offset`` may move on to (and why), or None: read it again.

    Past it only when the message cannot come: retention deleted it (``log_start`` is beyond),
    or it was read again once already (``read_again``) and still did not arrive, so the offset
    holds no message (a transaction marker from an outside producer, say); then up to
    ``present``, the next offset seen, as Faust skips a gap.
    """
    if log_start is not None and log_start > offset:
        return log_start, "deleted by retention"
    if read_again:
        return max(present, offset + 1), "which holds no message"
    return None


@dataclass
class Batch:
    """What one ``getmany`` call fetched."""

    records: Mapping[TP, list[Any]] = field(default_factory=dict)


# The batch of the getmany call running in this task (a drain loop is a task, and Faust may
# start a new one on a rebalance while the old one winds down).
_batch: ContextVar[Batch | None] = ContextVar("steamprice_fetch_batch", default=None)


def led(cluster: Any, topic: str) -> bool:
    """Whether aiokafka's cluster metadata has ``topic`` with a leader for each partition."""
    partitions = cluster.partitions_for_topic(topic)
    return bool(partitions) and cluster.available_partitions_for_topic(topic) == partitions


class ConsumerThread(aiokafka.AIOKafkaConsumerThread):
    """The thread that owns the aiokafka consumer: safer fetches, positions and rewinds."""

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: Set[TP],
        timeout: float | None = None,  # noqa: ASYNC109 (Faust's signature)
        max_records: int | None = None,
    ) -> Any:
        # A snapshot (the live set changes under us), and never the empty set, which aiokafka
        # takes for "all partitions".
        active = set(active_partitions)
        if not active:
            return {}
        return await super()._fetch_records(consumer, active, timeout, max_records)

    def _create_worker_consumer(self, transport: Any) -> Any:
        """Faust's consumer, fetching as the app says (:class:`App` ``fetch_wait``, ...).

        Faust asks for 1 byte and a 1.5 s wait: the broker answers a fetch as soon as any
        partition has a record. A worker consumes the records it produces itself (prices-raw
        to prices-normalized to the sinks), so during a sweep nearly every fetch came back with
        one record: ~54 fetches a second, each a walk over the ~60 assigned partitions and a
        request and answer encoded in Python, about 15% of a core on the consumer thread. Asked
        to gather up to ``fetch_min_bytes`` for at most ``fetch_wait``, the broker answers a
        busy worker with large fetches (a backlog still comes at once) and an idle one after
        ``fetch_wait``, which is also the most a record waits per hop. An idle worker pays for
        the shorter wait: 2.5% of a core at 0.25 s, 1.6% at Faust's 1.5 s (measured).
        """
        consumer = super()._create_worker_consumer(transport)
        app = cast(App, self.app)
        consumer._fetch_min_bytes = app.fetch_min_bytes  # handed to its fetcher on start
        consumer._fetch_max_wait_ms = int(app.fetch_wait * 1000)
        return consumer

    async def subscribe(self, topics: Iterable[str]) -> None:
        names = set(topics)
        await self.call_thread(self._until_led, names)
        await super().subscribe(names)

    async def _until_led(self, topics: set[str]) -> None:
        """Wait until the broker names a leader for every partition of ``topics``.

        Faust creates a worker's topics just before it subscribes to them, and a topic created
        a few milliseconds earlier may still have no partition leaders: the group's first
        assignment then left it out, the consumer's next metadata refresh (10 s later) found
        it and the group rebalanced, reading its first seconds of input again (one start of a
        new pipeline in five, here). Any topic still without leaders after
        :data:`SUBSCRIBE_WAIT_SECONDS` (one nobody created) is subscribed to anyway.
        """
        client = self._ensure_consumer()._client
        deadline = time.monotonic() + SUBSCRIBE_WAIT_SECONDS
        while True:
            try:
                cluster = await client.fetch_all_metadata()
            except Exception as exc:  # the join reports a broker that is away
                self.log.warning("Could not read the topics' metadata before subscribing: %r", exc)
                return
            waiting = sorted(t for t in topics if not led(cluster, t))
            if not waiting:
                return
            if time.monotonic() >= deadline:
                self.log.warning(
                    "Subscribing to %s without partition leaders after %.0f s: the group"
                    " rebalances once they have some",
                    ", ".join(waiting),
                    SUBSCRIBE_WAIT_SECONDS,
                )
                return
            await asyncio.sleep(SUBSCRIBE_POLL_SECONDS)

    def _states(self) -> Any:
        subscription = self._ensure_consumer()._subscription.subscription
        assignment = subscription.assignment if subscription is not None else None
        return assignment if assignment is not None and assignment.active else None

    async def positions(self, tps: Iterable[TP]) -> dict[TP, int | None]:
        return cast(dict[TP, int | None], await self.call_thread(self._positions, list(tps)))

    async def _positions(self, tps: list[TP]) -> dict[TP, int | None]:
        assignment = self._states()
        positions: dict[TP, int | None] = {}
        for tp in tps:
            ktp = aiokafka.ensure_aiokafka_TP(tp)
            state = assignment.state_value(ktp) if assignment is not None else None
            if state is not None and state.has_valid_position:
                positions[tp] = state.position
            else:
                positions[tp] = None
        return positions

    async def log_start(self, tp: TP) -> int | None:
        """The first offset the broker still has for ``tp`` (retention moves it)."""
        ktp = aiokafka.ensure_aiokafka_TP(tp)
        try:
            offsets = await self.call_thread(self._ensure_consumer().beginning_offsets, [ktp])
        except Exception as exc:  # the broker away: taken as "not moved by retention"
            self.log.info("Log start of %s unknown: %r", tp, exc)
            return None
        return cast(int | None, offsets.get(ktp))

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        # aiokafka calls this before every join, the first one included.
        await self._refuse_a_taken_instance_id()
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        coordinator = self._ensure_consumer()._coordinator
        if coordinator._group_instance_id is not None:
            remember_member_id(Path(self.app.conf.datadir), coordinator.member_id)
        await super().on_partitions_assigned(assigned, generation_id)

    async def _refuse_a_taken_instance_id(self) -> None:
        """Before a join without a member id (the first, or after the broker forgot this one):
        stop if the static id is held by a member that is not this worker's last session."""
        coordinator = self._ensure_consumer()._coordinator
        instance = coordinator._group_instance_id
        if instance is None or coordinator.member_id != JoinGroupRequest.UNKNOWN_MEMBER_ID:
            return
        try:
            response = await coordinator._send_req(DescribeGroupsRequest([coordinator.group_id]))
            members = [
                Member(m[0], m[1], m[2]) for group in response.groups for m in group[5] or ()
            ]
        except Exception as exc:  # the join goes ahead: this check must not stop a worker
            self.log.warning("Could not look up who holds group instance id %s: %r", instance, exc)
            return
        holder = conflict(members, instance, last_member_id(Path(self.app.conf.datadir)))
        if holder is not None:
            fatal(conflict_message(instance, holder, self.app.conf.broker_session_timeout))

    async def rewind(self, tp: TP, first: int, next_offset: int) -> bool:
        """Seek ``tp`` back to ``first`` unless it moved since a fetch ending at ``next_offset``."""
        return bool(await self.call_thread(self._rewind, tp, first, next_offset))

    async def _rewind(self, tp: TP, first: int, next_offset: int) -> bool:
        assignment = self._states()
        ktp = aiokafka.ensure_aiokafka_TP(tp)
        if assignment is None or ktp not in assignment.tps:
            return False  # revoked: its new owner reads on from the committed offset
        state = assignment.state_value(ktp)
        if not state.has_valid_position or state.position != next_offset:
            return False  # sought since: the seek decides where reading goes on
        self._ensure_consumer().seek(ktp, first)
        return True


class Resumed:
    """The rest of a coroutine that ran up to its first wait: an awaitable a task can drive.

    A coroutine started by hand (``coro.send(None)``) cannot be given to a task as it is: the
    task would resume it before the future it waits on is done. This yields that future to the
    task (and whatever it waits on next), and hands results, errors and cancellations on to the
    coroutine as the task would have (Python 3.12's eager tasks do the same first step).
    """

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
        self.coro = coro
        self.waiting = waiting

    def __await__(self) -> Generator[Any, None, Any]:
        coro, waiting = self.coro, self.waiting
        while True:
            try:
                yield waiting
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation, or the future's error
                try:
                    waiting = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting = coro.send(None)
                except StopIteration as stop:
                    return stop.value


class Consumer(aiokafka.Consumer):
    """Faust's aiokafka consumer without its rebalance losses (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._suspects: dict[TP, int] = {}
        self._reread_at: dict[TP, int] = {}
        # What the fixes did, for the logs, tests and metrics.
        self.counts = {"rewound": 0, "redelivered": 0, "ignored_acks": 0, "reread": 0}

    @property
    def thread(self) -> ConsumerThread:
        return cast(ConsumerThread, self._thread)

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _is_stream_tp(self, tp: TP) -> bool:
        return not self._is_changelog_tp(tp)

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109
        records = await super()._getmany(active_partitions, timeout)
        batch = _batch.get()
        if batch is not None:
            batch.records = records
        return records

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # noqa: ASYNC109
        batch = Batch()
        token = _batch.set(batch)
        delivered: dict[TP, int] = {}
        read_offset = self._read_offset
        try:
            async for tp, message in super().getmany(timeout):
                last_read = read_offset.get(tp)
                if last_read is not None and message.offset < last_read and self._is_stream_tp(tp):
                    read_offset[tp] = message.offset  # deliver it: Faust would drop it
                    self.counts["redelivered"] += 1
                delivered[tp] = message.offset
                yield tp, message
        finally:
            with contextlib.suppress(ValueError):  # closed from another context
                _batch.reset(token)
        await self._rewind_undelivered(batch, delivered)

    async def _deliver(self, callback: Any, message: Message) -> None:
        """Hand ``message`` to the conductor: Faust's ``wait_first(callback(message),
        self.suspend_flow.wait())``, without its four tasks when the delivery does not wait.

        Faust runs every delivery as a task raced against three more (the flow suspended, the
        consumer stopped or crashed), then cancels the losers: 33 us a message more than the
        delivery itself (timeit), and several turns of the event loop. A delivery waits only
        when it must (a full agent queue, a held flow, a producer buffer over its mark), so its
        first step runs here; if it finished, that is all, as it would have been in the task
        (which runs to completion when it never waits, whatever else was set meanwhile). If it
        waits, the rest of it runs in Faust's race, where a suspended flow cancels it as before.
        """
        coro = callback(message)
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
        await self.wait_first(Resumed(coro, waiting), self.suspend_flow.wait())

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's drain loop (faust-streaming 0.15.3) with one change: each delivery goes
        through :meth:`_deliver`. The rest is Faust's own logic, unchanged."""
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        deliver = self._deliver

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = cast(AsyncIterator[Any], getmany(timeout=1.0))
                # Sleeping because sometimes getmany is called in a loop never releasing to
                # the event loop.
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None:
                                if self._n_acked >= commit_every:
                                    self._n_acked = 0
                                    await self.commit()
                            await deliver(callback, message)
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(CONSUMER_FETCHING)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def _rewind_undelivered(self, batch: Batch, delivered: Mapping[TP, int]) -> None:
        for tp, records in batch.records.items():
            if not records or not self._is_stream_tp(tp):
                continue
            left = undelivered((r.offset for r in records), delivered.get(tp))
            if left and await self.thread.rewind(tp, left[0], records[-1].offset + 1):
                self.counts["rewound"] += len(left)
                self.log.info("Reading %d undelivered records of %s again", len(left), tp)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # A jump in a stream partition's offsets means records went missing on the way here,
        # not that the offsets do not exist (no compaction or transactions on stream topics).
        if not self._is_stream_tp(tp):
            await super()._add_gap(tp, offset_from, offset_to)

    def ack(self, message: Message) -> bool:
        if not message.tracked and (
            not self.app.flow_control.is_active()
            or message.generation_id != self.app.consumer_generation_id
        ):
            # Skipped by a stream, not handled (see the module docstring): read again later.
            self.counts["ignored_acks"] += 1
            return False
        return bool(super().ack(message))

    @Service.timer(STALL_CHECK_SECONDS)
    async def _reread_lost(self) -> None:
        """Seek back the partitions whose commits are stuck at a lost offset."""
        try:
            await self._check_stalls()
        except Exception:  # never let the safety net take the consumer down
            self.log.exception("Checking for stuck commits failed")

    async def _check_stalls(self) -> None:
        if (
            self.app.rebalancing
            or not self.flow_active
            or not self.app.flow_control.is_active()
            or getattr(self.app.producer.buffer, "holding", False)
            or self._commit_fut is not None
        ):
            # No partition is judged while the flow stops, or while the conductor holds a
            # message back until table writes were sent (ProducerBuffer): it is neither queued
            # nor in flight then, and not lost. Nor while a commit runs: it took the offsets
            # it commits off the acked ones, and the committed offset moves only once the
            # table writes were flushed to Kafka and the broker answered (seconds during a
            # first sweep, as long as the broker is away): until then they are neither acked
            # nor in flight, and were read twice as lost.
            self._suspects = {}
            return
        tps = [tp for tp in self.assignment() if self._is_stream_tp(tp)]
        in_flight: dict[TP, list[int]] = {}
        for message in list(self._unacked_messages):
            in_flight.setdefault(message.tp, []).append(message.offset)
        positions = await self.thread.positions(tps)
        suspects: dict[TP, int] = {}
        for tp in tps:
            acked, flight, position = (
                self._acked.get(tp, ()),
                in_flight.get(tp, ()),
                positions.get(tp),
            )
            offset = stalled_at(
                self._committed_offset.get(tp),
                acked,
                flight,
                position,
                queued=not self._queues_empty(tp),
            )
            if offset is None:
                continue
            if self._suspects.get(tp) != offset:
                suspects[tp] = offset  # once more, at the next check
                continue
            later = [o for o in (*acked, *flight) if o > offset]
            await self._recover(tp, offset, min(later) if later else position or offset + 1)
        self._suspects = suspects

    def _queues_empty(self, tp: TP) -> bool:
        channels = cast(Conductor, self.app.topics)._tp_index.get(tp, ())
        return all(channel.queue.empty() for channel in channels)

    async def _recover(self, tp: TP, offset: int, present: int) -> None:
        """Get the commits of ``tp`` past ``offset``; ``present`` is the next offset seen."""
        start = await self.thread.log_start(tp)
        skip = skip_to(offset, start, self._reread_at.get(tp) == offset, present)
        if skip is None:
            self.log.warning(
                "Commits of %s are stuck at offset %d, which no agent got: reading it again",
                *(tp, offset),
            )
            self._reread_at[tp] = offset
            await self.seek(tp, offset)
            self.counts["reread"] += 1
            return
        upto, why = skip
        self.log.warning(
            "Commits of %s are stuck at offset %d, %s: moving on to %d", tp, offset, why, upto
        )
        gaps = self._gap[tp]
        gaps.addi(offset, upto)
        gaps.merge_overlaps()

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        # Gaps (offsets that do not exist) count as acked, as in Faust.
        gaps = self._gap[tp]
        if gaps:
            top = max(acked)
            spans = sorted(gaps.overlap(0, top), key=lambda span: span.begin)
            if spans:
                filled = [o for span in spans for o in range(span.begin, span.end)]
                acked.extend(filled)
                gaps.chop(0, max(filled[-1], top + 1))
        acked.sort()
        batch = committable(acked, self._committed_offset[tp])
        if not batch:
            return None
        self._acked_index[tp].difference_update(batch)
        return batch[-1] + 1


# Per sensor: whether it counted the batch in one call, and its state (one, or one per message).
SensorState = tuple[Any, bool, Any]


def sends_initiated(
    sensors: Iterable[Any], producer: Any, topic: str, part: list[FutureMessage]
) -> list[SensorState]:
    """Tell every sensor a batch of ``part`` goes out: in one call where it can take a count
    (``on_sends_initiated``, as ``web.PrometheusMonitor``), else once per message as Faust does."""
    states: list[SensorState] = []
    for sensor in sensors:
        bulk = getattr(sensor, "on_sends_initiated", None)
        if bulk is not None:
            states.append((sensor, True, bulk(producer, topic, len(part))))
            continue
        each = [
            sensor.on_send_initiated(
                producer,
                topic,
                message=fut.message,
                keysize=len(fut.message.key or b""),
                valsize=len(fut.message.value or b""),
            )
            for fut in part
        ]
        states.append((sensor, False, each))
    return states


def sends_completed(producer: Any, states: list[SensorState], results: list[Any]) -> None:
    """Tell every sensor of :func:`sends_initiated` its batch was sent (``results``: each
    message's ``RecordMetadata``)."""
    for sensor, bulk, state in states:
        if bulk:
            sensor.on_sends_completed(producer, state, len(results))
        else:
            for each, result in zip(state, results, strict=True):
                sensor.on_send_completed(producer, each, result)


def metadata_of(sent: RecordMetadata, count: int) -> list[RecordMetadata]:
    """The ``RecordMetadata`` of each of ``count`` messages sent as one record batch."""
    return [
        RecordMetadata(
            sent.topic,
            sent.partition,
            sent.topic_partition,
            sent.offset + i,
            sent.timestamp,
            sent.timestamp_type,
            sent.log_start_offset,
        )
        for i in range(count)
    ]


async def send_now(app: Any, topic: Any, partition: int, values: list[bytes]) -> None:
    """``values`` (serialized) on one partition of ``topic``, sent at once and delivered.

    A send through Faust waits in the producer for ``PRODUCER_LINGER_MS`` (50 ms) before it
    goes, to fill its batch: the right trade for a stream of records, but a step that must wait
    for its own record to reach the broker pays it every time (the schedule agent, 50 to 100
    ms of each seed record: it held a seed of 50,000 apps to ~1,800 apps a second). Here they
    go as one closed record batch (``send_batch``), which aiokafka sends without lingering (a
    batch that takes no more messages is ready: ``MessageBatch.remaining_linger``), and are
    counted on the sensors and the ``on_produce_message`` signal as Faust counts a send. A
    batch the broker refuses raises here, as a send through Faust would.
    """
    producer = app.producer
    kafka = producer._ensure_producer()
    name = topic.get_topic_name()
    part = [
        FutureMessage(
            PendingMessage(
                topic,
                None,
                value,
                partition,
                None,
                {},
                None,
                None,
                None,
                None,
                None,
                app.consumer_generation_id,
            )
        )
        for value in values
    ]
    delivered: list[Any] = []
    start = 0
    while start < len(part):
        batch, end = kafka.create_batch(), start
        while (
            end < len(part)
            and batch.append(timestamp=None, key=None, value=part[end].message.value) is not None
        ):
            end += 1
        if end == start:  # aiokafka takes any first message; this is only a safeguard
            raise ValueError(f"a record of {len(values[start])} bytes fits no Kafka record batch")
        batch.close()
        for fut in part[start:end]:
            producer._send_on_produce_message(
                key=None, value=fut.message.value, partition=partition, timestamp=None, headers={}
            )
        states = sends_initiated(app.sensors, producer, name, part[start:end])
        future = await kafka.send_batch(batch, name, partition=partition)
        delivered.append(delivered_count(producer, future, states, end - start))
        start = end
    await asyncio.gather(*delivered)


async def delivered_count(
    producer: Any, future: Any, states: list[SensorState], count: int
) -> None:
    """Wait for a batch of :func:`send_now` and tell the sensors how it went."""
    try:
        sent = await future
    except Exception as exc:
        for sensor, bulk, state in states:
            for each in [state] * count if bulk else state:
                sensor.on_send_error(producer, exc, each)
        raise
    sends_completed(producer, states, metadata_of(sent, count))


class ProducerBuffer(FaustProducerBuffer):
    """Faust's buffer of table writes (changelog messages), counted instead of polled.

    A table write cannot await, so Faust queues its changelog message here; a task hands them to
    the Kafka producer, the conductor waits before delivering each message while too many are
    queued (``wait_until_ebb``), and every commit first flushes the queue. Faust waits for each
    message with a 0.1 s timeout, returns from a flush at the first timeout (committing offsets
    whose table writes are still queued), and logs a warning for every wait: during a first
    sweep that was thousands of lines, commits of 10 s and more, and deliveries held long enough
    for the check of stuck commits to take a held message for a lost one and read it again.

    Here every message put and sent is counted, and a wait is for a count: a flush waits until
    everything queued before it was sent (whatever is queued meanwhile), and the conductor, once
    more than :data:`BUFFER_MESSAGES` are queued, until half of them were. ``holding`` tells the
    check of stuck commits that a message is held back on purpose. A buffer that is not running
    (stopping) sends what is left itself.
    """

    max_messages = BUFFER_MESSAGES

    def __post_init__(self) -> None:
        super().__post_init__()
        self.put_count = 0
        self.sent_count = 0
        self.holding = False
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._held = 0  # waits since the last log line
        self._logged_at = 0.0

    def put(self, fut: FutureMessage) -> None:
        self.put_count += 1
        self.pending.put_nowait(fut)

    @property
    def size(self) -> int:
        # Queued or in the round being handed to the producer: not sent yet.
        return self.put_count - self.sent_count

    def _sent(self, count: int = 1) -> None:
        self.sent_count += count
        self.message_sent.set()
        if self._waiters:
            waiting = []
            for target, future in self._waiters:
                if target > self.sent_count:
                    waiting.append((target, future))
                elif not future.done():
                    future.set_result(None)
            self._waiters = waiting

    async def _until_sent(self, count: int) -> None:
        if self.sent_count >= count:
            return
        if self.state != "running" or self.should_stop:
            await self._send_left()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, future))
        await future

    async def _send_left(self) -> None:
        while self.pending.qsize():
            await self._send_round(self._take(self.pending.get_nowait()))

    def _take(self, first: FutureMessage) -> list[FutureMessage]:
        """``first`` and what else is queued, up to :data:`BUFFER_ROUND_MESSAGES`."""
        taken = [first]
        pending = self.pending
        while len(taken) < BUFFER_ROUND_MESSAGES and pending.qsize():
            taken.append(pending.get_nowait())
        return taken

    async def _send_round(self, futs: list[FutureMessage]) -> None:
        """Hand ``futs`` to the Kafka producer: table writes as one record batch per partition.

        Faust publishes each message on its own (sensors, a producer future, a callback that
        writes the changelog offset to RocksDB): about a quarter of the CPU of a first sweep,
        where every observation writes a table. A batch per changelog partition costs one
        producer future and one offset write; every message still gets its result (its offset
        in the batch) and its sensor calls. Anything else is published as Faust does.
        """
        groups: dict[tuple[str, int], list[FutureMessage]] = {}
        grouped = 0
        for fut in futs:
            message = fut.message
            callback = getattr(message, "callback", None)
            if (
                isinstance(callback, MethodType)
                and callback.__func__ is Collection._on_changelog_sent
                and message.partition is not None
                and not cast(Any, self.app).in_transaction
            ):
                topic = message.channel.get_topic_name()
                groups.setdefault((topic, message.partition), []).append(fut)
                grouped += 1
                continue
            # Counted in order: a flush waits for what was queued before it, so what was
            # grouped before this message is sent first.
            await self._send_groups(groups, grouped)
            groups, grouped = {}, 0
            await self._send_pending(fut)
            self._sent()
        await self._send_groups(groups, grouped)

    async def _send_groups(
        self, groups: dict[tuple[str, int], list[FutureMessage]], count: int
    ) -> None:
        for (topic, partition), group in groups.items():
            await self._send_batches(topic, partition, group)
        if count:
            self._sent(count)

    async def _send_batches(self, topic: str, partition: int, group: list[FutureMessage]) -> None:
        app = cast(Any, self.app)
        producer, sensors = app.producer, app.sensors
        kafka = producer._ensure_producer()
        produced = producer._send_on_produce_message
        headers_allowed = producer.allow_headers
        start = 0
        while start < len(group):
            batch = kafka.create_batch()
            end = start
            while end < len(group):
                message = group[end].message
                headers = message.headers
                if isinstance(headers, Mapping):
                    headers = list(headers.items())
                if not headers_allowed or not headers:
                    headers = []
                timestamp = message.timestamp
                stamp_ms = int(timestamp * 1000.0) if timestamp else None
                if (
                    batch.append(
                        timestamp=stamp_ms, key=message.key, value=message.value, headers=headers
                    )
                    is None
                ):
                    break
                end += 1
            if end == start:  # larger than a batch: Faust sends it on its own
                await self._send_pending(group[start])
                start += 1
                continue
            part = group[start:end]
            # Closed: aiokafka sends it at once instead of lingering (PRODUCER_LINGER_MS) for
            # messages that will not come, and a round's next batch for the partition waited
            # for that linger: the buffer then sent about 13,000 table writes/s and held every
            # delivery back for seconds while a first sweep's writes queued up.
            batch.close()
            for fut in part:
                message = fut.message
                produced(
                    key=message.key,
                    value=message.value,
                    partition=partition,
                    timestamp=message.timestamp,
                    headers=message.headers,
                )
            states = sends_initiated(sensors, producer, topic, part)
            future = await kafka.send_batch(batch, topic, partition=partition)
            future.add_done_callback(partial(self._batch_sent, part, states))
            start = end

    def _batch_sent(
        self, part: list[FutureMessage], states: list[SensorState], future: asyncio.Future[Any]
    ) -> None:
        producer = cast(Any, self.app).producer
        try:
            sent = future.result()
        except Exception as exc:
            logger.warning(
                "Could not send %d table writes to %s: %r",
                *(len(part), part[0].message.channel.get_topic_name(), exc),
            )
            for fut in part:
                if not fut.done():
                    fut.set_exception(exc)
            for sensor, bulk, state in states:
                for each in [state] * len(part) if bulk else state:
                    sensor.on_send_error(producer, exc, each)
            return
        results = metadata_of(sent, len(part))
        for fut, result in zip(part, results, strict=True):
            if not fut.done():
                fut.set_result(result)
        sends_completed(producer, states, results)
        # One partition of one table: the last offset is what its RocksDB database has.
        last = part[-1]
        cast(Any, last.message.callback)(last)

    async def flush(self) -> None:
        await self._until_sent(self.put_count)

    async def flush_atmost(self, max_messages: int | None) -> int:
        before = self.sent_count
        if max_messages is None:
            await self.flush()
        else:
            await self._until_sent(min(self.put_count, self.sent_count + max_messages))
        return self.sent_count - before

    async def wait_until_ebb(self) -> None:
        if self.size <= self.max_messages:
            return
        self.holding = True
        started = time.monotonic()
        try:
            await self._until_sent(self.put_count - self.max_messages // 2)
        finally:
            self.holding = False
        self._held += 1
        if started - self._logged_at >= BUFFER_LOG_SECONDS:
            logger.info(
                "Table writes are ahead of Kafka: deliveries held back %d time(s) since the last"
                " such line (this one %.1f s, until %d of %d writes were sent)",
                *(self._held, time.monotonic() - started, self.max_messages // 2, self.size),
            )
            self._held, self._logged_at = 0, started

    @Service.task
    async def _handle_pending(self) -> None:
        get_pending = self.pending.get
        while not self.should_stop:
            round_ = self._take(await get_pending())
            try:
                await self._send_round(round_)
            except BaseException as exc:
                for _, future in self._waiters:
                    if not future.done():
                        future.set_exception(exc)
                self._waiters = []
                raise


def track_sent_topics(client: Any) -> None:
    """Make an aiokafka client keep the metadata of every topic its producer sends to.

    aiokafka refreshes the metadata of the topics a client tracks (of every topic while it
    tracks none), and a send starts tracking its topic only when the metadata lacks it. A topic
    first sent to while the metadata held every topic is therefore never tracked, and the next
    refresh after another topic is tracked drops it: a batch queued for it meanwhile (it lingers
    ``PRODUCER_LINGER_MS``) then waits for a leader that the refreshes of the tracked topics never
    bring back, until it expires (``producer_request_timeout``, 20 minutes), and every flush, so
    every commit, waits with it. Seen in a worker whose schedule agent wrote the app-state table
    (queued for its changelog) and then sent its first app-ids-failed message: the table write
    never reached Kafka. Here a send tracks its topic before the metadata is looked at, so a
    refresh keeps it, and a batch that lost its leader to an earlier refresh gets it back at the
    next one (aiokafka refreshes while a queued batch has no leader).
    """
    wait_on_metadata = client._wait_on_metadata

    async def tracked_wait_on_metadata(topic: str) -> Any:
        if topic not in client._topics:
            client.add_topic(topic)  # a refresh of every tracked topic, this one included
        return await wait_on_metadata(topic)

    client._wait_on_metadata = tracked_wait_on_metadata


class Producer(aiokafka.Producer):
    """Faust's aiokafka producer with the counted :class:`ProducerBuffer`, whose Kafka producer
    keeps the metadata of every topic it sends to (:func:`track_sent_topics`)."""

    def __init__(self, transport: Any, loop: Any = None, **kwargs: Any) -> None:
        super().__init__(transport, loop=loop, **kwargs)
        if not self.app.conf.producer_threaded:  # a threaded producer keeps Faust's own
            buffer = ProducerBuffer(loop=self.loop, beacon=self.beacon)
            buffer.app = self.app
            self.buffer = buffer

    def _new_producer(self, transactional_id: str | None = None) -> Any:
        producer = super()._new_producer(transactional_id)
        track_sent_topics(producer.client)
        return producer


class Transport(aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer


class Worker(faust.Worker):
    """faust's worker, refusing faust-streaming and aiokafka releases not in :data:`PROVEN_WITH`.

    The refusal is one line on stderr and exit code 1, before anything starts.
    """

    def __init__(self, app: App, *services: Any, **kwargs: Any) -> None:
        try:
            self.untested = check_versions(app.allow_untested_versions, installed_versions())
        except UntestedVersions as exc:
            raise SystemExit(f"steamprice worker: {exc}") from None
        super().__init__(app, *services, **kwargs)

    async def on_start(self) -> None:
        await super().on_start()  # logging is set up by now
        tune_garbage_collector()
        if self.untested:
            logger.warning(
                "ALLOW_UNTESTED_FAUST=true: %s; messages may be lost around rebalances",
                self.untested,
            )


class Recovery(FaustRecovery):
    """Faust's table recovery; local state that disagrees with the cluster ends the worker with
    one line naming the table, the data directory and the fix (not a traceback and a stop)."""

    async def _build_offsets(
        self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title != "active":
            return
        # Faust's own check tests the offsets' truth, so it lets through a changelog whose last
        # offset is 0 (one record since a Kafka reset) and a local copy that applied only
        # offset 0; the worker then goes on with the old cluster's state, silently.
        ahead = ahead_of_changelog({tp: destination[tp] for tp in tps}, self.active_highwaters)
        if ahead is not None:
            raise ConsistencyError(E_PERSISTED_OFFSET.format(*ahead))

    async def crash(self, reason: BaseException) -> None:
        if isinstance(reason, ConsistencyError):
            tables = {t.changelog_topic.get_topic_name(): t.name for t in self.tables.values()}
            fatal(consistency_message(str(reason), tables, Path(self.app.conf.datadir)))
        await super().crash(reason)


class TableManager(FaustTableManager):
    @property
    def recovery(self) -> FaustRecovery:
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class App(faust.App):
    """``faust.App`` whose Kafka transport uses the consumer above, started by :class:`Worker`,
    and which gives a worker its identity: ``static_membership=True`` joins with
    ``consumer_group_instance_id``, or without one, with the id kept in the data directory
    (``steamprice.local_state``). ``allow_untested_versions`` lets a worker start on releases
    other than :data:`PROVEN_WITH`. ``fetch_wait`` and ``fetch_min_bytes``: how the worker's
    consumer fetches (:meth:`ConsumerThread._create_worker_consumer`).
    """

    def __init__(
        self,
        *args: Any,
        allow_untested_versions: bool = False,
        static_membership: bool = False,
        fetch_wait: float = FETCH_WAIT_SECONDS,
        fetch_min_bytes: int = FETCH_MIN_BYTES,
        **options: Any,
    ) -> None:
        options.setdefault("Worker", Worker)
        options.setdefault("TableManager", TableManager)
        super().__init__(*args, **options)
        self.allow_untested_versions = allow_untested_versions
        self.static_membership = static_membership
        self.fetch_wait = fetch_wait
        self.fetch_min_bytes = fetch_min_bytes
        self._data_dir_lock: DataDirLock | None = None

    def _new_transport(self) -> Any:
        if self.conf.broker_consumer[0].scheme in ("kafka", "aiokafka"):
            return Transport(self.conf.broker_consumer, self)
        return super()._new_transport()

    async def on_first_start(self) -> None:
        # A worker only (commands never start the app), before any table or consumer exists.
        data_dir = Path(self.conf.datadir)  # absolute: create_app resolves it
        lock = DataDirLock(data_dir)
        try:
            lock.acquire()
        except DataDirInUse as exc:
            fatal(str(exc))
        self._data_dir_lock = lock
        if self.static_membership:
            instance = instance_id(data_dir, self.conf.consumer_group_instance_id or "")
            self.conf.consumer_group_instance_id = instance
            self.log.info(
                "Joining consumer group %s as static member %s (data directory %s)",
                *(self.conf.id, instance, data_dir),
            )
        await super().on_first_start()
