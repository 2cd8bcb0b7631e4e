"""The seed topic, read in bulk by a Kafka consumer group of its own (``<APP_ID>-intake``).

Seeds are one Kafka record per app (the seed topic is a contract), so a seeded catalog is tens
of thousands of records. Through a Faust agent each one paid Faust's per-message path (fetch
bookkeeping, event, stream iteration, ack): about 140 us of worker CPU a seed, 7 s for 50,000
during which the worker did little else. Here aiokafka hands them over in fetches of up to
:data:`FETCH_RECORDS`, and the handler turns a whole fetch into one schedule record per
partition.

Kafka still does the distribution: every worker joins the group, the broker spreads the seed
topic's partitions over them and moves them when workers come and go (the group of Faust's
own consumer is a different one; the handler sends each seed to the schedule partition of its
app, whichever worker owns it). At-least-once, as everywhere: the offsets of a fetch are
committed only after the handler returned, and it returns only once the broker has what it
sent. A rebalance waits for the fetch in hand to be committed (:meth:`SeedConsumer._revoked`),
so the next owner of a partition starts after it; a crash before the commit hands the fetch
to the next owner again (a seed twice in a short while schedules one request: the dedupe
window). A fetch the handler fails on (the broker unreachable) is read again after a pause:
nothing is skipped.

A worker's first start with this group (an upgrade from the Faust agent) begins each partition
where the Faust group's commits for the seed topic left it, not at the start of the topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import ConsumerStoppedError
from aiokafka.structs import ConsumerRecord
from mode import Service

from steamprice.metrics import Metrics
from steamprice.settings import bootstrap_servers

logger = logging.getLogger(__name__)

# Most seeds one fetch (and so one handler call) holds.
FETCH_RECORDS = 5000
# How long a fetch waits for seeds when there are none.
POLL_MS = 500
# The pause before a fetch the handler failed on is read again.
RETRY_SECONDS = 2.0
# How long a stopping worker waits for the fetch in hand (then Kafka hands it out again).
STOP_WAIT_SECONDS = 10.0

Handler = Callable[[Sequence[ConsumerRecord[bytes, bytes]]], Awaitable[None]]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: SeedConsumer, consumer: AIOKafkaConsumer) -> None:
        self.owner = owner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.owner._revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # Called as soon as the group is joined: maybe before ``start()`` returned.
        await self.owner._assigned(self.consumer, assigned)


class SeedConsumer(Service):
    """Reads ``topic`` in the consumer group ``group``; ``handler`` gets each fetch's records."""

    def __init__(
        self,
        *,
        kafka_broker: str,
        topic: str,
        group: str,
        handler: Handler,
        metrics: Metrics,
        upgrade_from_group: str | None = None,
        instance_id: Callable[[], str | None] = lambda: None,
        session_timeout: float = 45.0,
        declare: Callable[[], Awaitable[Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.servers = bootstrap_servers(kafka_broker)
        self.topic = topic
        self.group = group
        self.handler = handler
        self.metrics = metrics
        self.upgrade_from_group = upgrade_from_group
        self.instance_id = instance_id
        self.session_timeout = session_timeout
        self.declare = declare
        self.consumer: AIOKafkaConsumer | None = None
        # Held while a fetch is handled and committed: a rebalance waits for it.
        self._busy = asyncio.Lock()
        # The offset each assigned partition is committed at (what lag is measured from).
        self.committed: dict[TopicPartition, int] = {}
        # How many times each partition was sought by an assignment (see ``_run``).
        self._sought: dict[TopicPartition, int] = {}

    async def _open(self) -> AIOKafkaConsumer:
        if self.declare is not None:
            await self.declare()  # with the pipeline's partitions, before anyone subscribes
        instance = self.instance_id()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers,
            group_id=self.group,
            # Static membership like the worker's own group: a restart takes its partitions
            # back at once.
            group_instance_id=f"{instance}-intake" if instance else None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=FETCH_RECORDS,
            session_timeout_ms=int(self.session_timeout * 1000),
            heartbeat_interval_ms=min(3000, int(self.session_timeout * 1000) // 3),
            # A fetch waits out a broker outage in the handler (as the worker's sinks may).
            max_poll_interval_ms=3_600_000,
        )
        consumer.subscribe([self.topic], listener=_Listener(self, consumer))
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def on_stop(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is None:
            return
        try:  # the fetch in hand is finished and committed first
            await asyncio.wait_for(self._busy.acquire(), STOP_WAIT_SECONDS)
        except TimeoutError:
            logger.warning("Stopped with seeds in hand: they are read again (not committed)")
        else:
            self._busy.release()
        await consumer.stop()

    @Service.task
    async def _run(self) -> None:
        while not self.should_stop and self.consumer is None:
            try:
                self.consumer = await self._open()
            except Exception as exc:
                logger.warning(
                    "Seed topic not read yet (%s: %s); retrying in %.0f s",
                    exc.__class__.__name__,
                    exc,
                    RETRY_SECONDS,
                )
                await self.sleep(RETRY_SECONDS)
        while not self.should_stop:
            consumer = self.consumer
            if consumer is None:
                return
            try:
                fetched = await consumer.getmany(timeout_ms=POLL_MS)
            except ConsumerStoppedError:
                return
            except Exception as exc:  # never seen; logged, and read again, never a crash
                logger.warning("Seed fetch failed (%s: %s)", exc.__class__.__name__, exc)
                await self.sleep(RETRY_SECONDS)
                continue
            if not fetched:
                continue
            sought = dict(self._sought)
            async with self._busy:
                if self.consumer is None:
                    return
                # A rebalance may have come in between: records of partitions now gone, or
                # sought elsewhere since they were fetched (an upgrade's start), are not ours.
                assigned = consumer.assignment()
                fetched = {
                    tp: part
                    for tp, part in fetched.items()
                    if tp in assigned and self._sought.get(tp) == sought.get(tp)
                }
                if fetched:
                    await self._handle(consumer, fetched)

    async def _handle(
        self,
        consumer: AIOKafkaConsumer,
        fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        records = [r for part in fetched.values() for r in part]
        try:
            await self.handler(records)
        except Exception as exc:
            self.metrics.kafka_messages.labels("app-ids", "reread").inc(len(records))
            logger.warning(
                "Seeds at %s not taken in (%s: %s); read again in %.0f s",
                ", ".join(f"{tp.partition}@{part[0].offset}" for tp, part in fetched.items()),
                exc.__class__.__name__,
                exc,
                RETRY_SECONDS,
            )
            for tp, part in fetched.items():
                if tp in consumer.assignment():
                    consumer.seek(tp, part[0].offset)
            await self.sleep(RETRY_SECONDS)
            return
        offsets = {tp: part[-1].offset + 1 for tp, part in fetched.items()}
        try:
            await consumer.commit(offsets)
        except Exception as exc:
            # Handled but not committed: the partition's next owner reads these seeds again
            # (harmless: a seed twice in the dedupe window schedules one request).
            logger.warning("Seed offsets not committed (%s: %s)", exc.__class__.__name__, exc)
            return
        self.committed.update(offsets)

    async def _revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._busy:  # the fetch in hand is committed before the partitions go
            for tp in revoked:
                self.committed.pop(tp, None)

    async def _assigned(self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> None:
        # The consumer may already be fetching from where the group's commits (or their
        # absence: the beginning) put it; what it fetched waits until this is decided.
        async with self._busy:
            await self._start_positions(consumer, assigned)

    async def _start_positions(
        self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition]
    ) -> None:
        missing: list[TopicPartition] = []
        for tp in assigned:
            offset = await consumer.committed(tp)
            if offset is None:
                missing.append(tp)
            else:
                self.committed[tp] = offset
        if missing and self.upgrade_from_group:
            try:
                earlier = await self._offsets_of(self.upgrade_from_group, missing)
            except Exception as exc:
                logger.warning(
                    "Offsets of group %s not read (%s: %s): seed partitions %s start at"
                    " their beginning",
                    self.upgrade_from_group,
                    exc.__class__.__name__,
                    exc,
                    sorted(tp.partition for tp in missing),
                )
                earlier = {}
            for tp, offset in earlier.items():
                logger.info(
                    "Seed partition %d starts at offset %d, where group %s left it",
                    tp.partition,
                    offset,
                    self.upgrade_from_group,
                )
                consumer.seek(tp, offset)
                self._sought[tp] = self._sought.get(tp, 0) + 1
                self.committed[tp] = offset
                missing.remove(tp)
        if missing:
            for tp, offset in (await consumer.beginning_offsets(missing)).items():
                self.committed[tp] = offset

    async def _offsets_of(
        self, group: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """What ``group`` committed for ``partitions`` (those it committed at all)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.servers)
        await admin.start()
        try:
            found = await admin.list_consumer_group_offsets(group, partitions=list(partitions))
        finally:
            await admin.close()
        return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    async def lag(self) -> int | None:
        """Seeds on this worker's partitions not yet taken in (None: none assigned)."""
        consumer = self.consumer
        if consumer is None:
            return None
        tps = [tp for tp in consumer.assignment() if tp in self.committed]
        if not tps:
            return None
        ends = await consumer.end_offsets(tps)
        return int(sum(max(0, ends[tp] - self.committed[tp]) for tp in tps))
