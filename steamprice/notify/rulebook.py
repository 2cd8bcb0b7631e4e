"""The alert rules every worker sees: the compacted rules topic, read from its start and followed.

Kafka is the source of truth: ``<APP_ID>.alert-rules`` holds one record per rule name (JSON, see
:meth:`AlertRule.to_json`; a null value -- a tombstone -- removes the rule) and is compacted, so
reading it from the beginning gives every rule as last written. Each worker runs a
:class:`RuleBook` that does that with a plain consumer of its own (no consumer group, every
partition) and then follows the topic, so a change made by ``steamprice alerts`` applies within
about a second, and a restart loses none.

Not Faust's ``GlobalTable``: in faust-streaming 0.15.3 a GlobalTable read by several workers
stops applying changes on some of them (faust-streaming#283, open) and misses records fetched
after recovery (#212), and it would ride on the consumer internals ``steamprice.kafka`` repairs.
A rule book is a few hundred records: reading them directly is simple and exact.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from steamprice.metrics import Metrics
from steamprice.notify.rules import DEFAULT_RULE, AlertRule, RuleError, RuleIndex, rule_from_json
from steamprice.settings import bootstrap_servers

logger = logging.getLogger(__name__)

FOLLOW_POLL_MS = 500
RETRY_SECONDS = 2.0
SOURCE = "alert-rules"


def apply_record(
    rules: dict[str, AlertRule], key: bytes | None, value: bytes | None
) -> tuple[str, str]:
    """Apply one topic record to ``rules``: (what happened, rule name) -- ``set``, ``removed``,
    ``invalid: why`` (the rule keeps its previous version). Never logs or returns the value."""
    if not key:
        return "invalid: no key", ""
    try:
        name = key.decode()
    except UnicodeDecodeError:
        return "invalid: key is not UTF-8", repr(key[:64])
    if value is None:
        return ("removed" if rules.pop(name, None) is not None else "removed (unknown)"), name
    if name == DEFAULT_RULE:
        return "invalid: the default rule is defined by the DISCORD_* settings", name
    try:
        rules[name] = rule_from_json(name, value)
    except RuleError as exc:
        return f"invalid: {exc}", name
    return "set", name


class RuleReader:
    """Reads the rules topic: :meth:`read_all` once, then :meth:`follow` for changes."""

    def __init__(self, kafka_broker: str, topic: str) -> None:
        self.servers = bootstrap_servers(kafka_broker)
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        # Where reading resumes after a reconnect (never from the start again: a replay would
        # show old versions of rules for a moment).
        self.positions: dict[TopicPartition, int] = {}

    async def open(self) -> bool:
        """Connect and assign every partition; False when the topic does not exist yet."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.servers, enable_auto_commit=False)
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(self.topic)
            if not partitions:
                await consumer.stop()
                return False
            self._tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(self._tps)
            for tp in self._tps:
                if tp in self.positions:
                    consumer.seek(tp, self.positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        return True

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def read_to_end(self) -> list[tuple[bytes | None, bytes | None]]:
        """Every record from the current positions to the end offsets as of now."""
        assert self._consumer is not None
        end = await self._consumer.end_offsets(self._tps)
        out: list[tuple[bytes | None, bytes | None]] = []
        remaining = {tp for tp in self._tps if await self._consumer.position(tp) < end[tp]}
        while remaining:
            out.extend(await self.poll(remaining))
            remaining = {tp for tp in remaining if await self._consumer.position(tp) < end[tp]}
        return out

    async def poll(
        self, tps: Iterable[TopicPartition] | None = None, timeout_ms: int = 1000
    ) -> list[tuple[bytes | None, bytes | None]]:
        assert self._consumer is not None
        batch = await self._consumer.getmany(*(tps or self._tps), timeout_ms=timeout_ms)
        out: list[tuple[bytes | None, bytes | None]] = []
        for tp, records in batch.items():
            for r in records:
                out.append((r.key, r.value))
                self.positions[tp] = r.offset + 1
        return out


async def read_rules(kafka_broker: str, topic: str) -> dict[str, AlertRule]:
    """The current rules (for the CLI): the topic read once to its end."""
    reader = RuleReader(kafka_broker, topic)
    rules: dict[str, AlertRule] = {}
    if not await reader.open():
        return rules
    try:
        for key, value in await reader.read_to_end():
            apply_record(rules, key, value)
    finally:
        await reader.close()
    return rules


class RuleBook(Service):
    """This worker's copy of every alert rule, kept current from the rules topic.

    ``loaded`` is set once the topic was read to its end at start: routing waits for it, so
    changes consumed at start are never routed against a partial rule set.
    """

    def __init__(
        self,
        kafka_broker: str,
        topic: str,
        metrics: Metrics,
        declare: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reader = RuleReader(kafka_broker, topic)
        self.metrics = metrics
        self.declare = declare
        self.rules: dict[str, AlertRule] = {}
        self.index = RuleIndex(())
        self.version = 0
        self.loaded = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[], None]) -> None:
        """``callback()`` after every change of the rule set (and once loaded)."""
        self._listeners.append(callback)

    @Service.task
    async def _follow(self) -> None:
        while not self.should_stop:
            try:
                if self.declare is not None:
                    await self.declare()
                if not await self.reader.open():
                    logger.info("Alert rules topic %s not there yet; waiting", self.reader.topic)
                    await self.sleep(RETRY_SECONDS)
                    continue
                try:
                    if not self.loaded.is_set():
                        self._apply(await self.reader.read_to_end())
                        self.loaded.set()
                        logger.info("Alert rules loaded: %d rules", len(self.rules))
                        self._changed()
                    while not self.should_stop:
                        records = await self.reader.poll(timeout_ms=FOLLOW_POLL_MS)
                        if records and self._apply(records):
                            self._changed()
                finally:
                    await self.reader.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.should_stop:
                    return
                logger.warning(
                    "Alert rules topic not readable (%s: %s); retrying",
                    exc.__class__.__name__,
                    exc,
                )
                await self.sleep(RETRY_SECONDS)

    def _apply(self, records: list[tuple[bytes | None, bytes | None]]) -> bool:
        """Apply records; True when the rule set changed."""
        rules = dict(self.rules)
        for key, value in records:
            what, name = apply_record(rules, key, value)
            if what.startswith("invalid"):
                # The record itself is never logged: it holds a webhook URL.
                self.metrics.bad_input.labels(SOURCE, "invalid_rule").inc()
                logger.error("Alert rule %r on the rules topic ignored (%s)", name, what[9:])
            elif self.loaded.is_set():
                logger.info("Alert rule %r %s", name, what)
        if rules == self.rules:
            return False
        self.rules = rules
        self.index = RuleIndex(rules.values())
        self.version += 1
        return True

    def _changed(self) -> None:
        for callback in self._listeners:
            callback()
