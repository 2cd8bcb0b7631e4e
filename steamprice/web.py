"""Web endpoints beside Faust's stats page (/metrics, /health) and the worker's own gauges.

Every page is read-only (GET) and shows no setting: secrets never reach the web server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from itertools import repeat
from typing import Any, cast
from weakref import WeakKeyDictionary

from faust import web
from faust.sensors import Monitor
from faust.sensors.prometheus import FaustMetrics, setup_prometheus_sensors
from faust.sensors.prometheus import PrometheusMonitor as FaustPrometheusMonitor
from faust.types import TP, CollectionT, EventT, Message, ProducerT, StreamT
from faust.types.tuples import PendingMessage
from mode import Service
from prometheus_client import Histogram

from steamprice.agents.intake import seed_consumer
from steamprice.app import app, settings
from steamprice.report import consumer_lag, short_topic
from steamprice.services import metrics, notifier

logger = logging.getLogger(__name__)

STARTED_AT = time.time()
# How often consumer lag and table sizes are measured: one ListOffsets request per round.
COLLECT_SECONDS = 5.0


class PrometheusMonitor(FaustPrometheusMonitor):
    """Faust's Prometheus sensor, with the label lookups of its per-key hooks done once.

    Every table read and write and every message sent (a table write is one, to its changelog)
    looked its series up by labels (``labels(...)``: a few microseconds, several times per
    observation of a first sweep), and every message and event received twice more (one seed
    is one of each). The series are the same, and so are the values.
    """

    def __init__(self, metrics: FaustMetrics, **kwargs: Any) -> None:
        super().__init__(metrics, **kwargs)
        self._labelled: dict[tuple[Any, ...], Any] = {}
        # The per-message hooks' series, by partition and by stream (Faust built the stream's
        # label with a regular expression per event).
        self._by_tp: dict[TP, tuple[Any, Any]] = {}
        self._by_stream: MutableMapping[StreamT[Any], Any] = WeakKeyDictionary()  # as Faust's

    def _series(self, metric: Any, **labels: str) -> Any:
        key = (id(metric), *labels.values())
        series = self._labelled.get(key)
        if series is None:
            series = self._labelled[key] = metric.labels(**labels)
        return series

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        Monitor.on_message_in(self, tp, offset, message)
        metrics = self._metrics
        metrics.messages_received.inc()
        metrics.active_messages.inc()
        series = self._by_tp.get(tp)
        if series is None:
            series = self._by_tp[tp] = (
                metrics.messages_received_per_topics.labels(topic=tp.topic),
                metrics.messages_received_per_topics_partition.labels(
                    topic=tp.topic, partition=tp.partition
                ),
            )
        series[0].inc()
        series[1].set(offset)

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[str, Any] | None:
        state = Monitor.on_stream_event_in(self, tp, offset, stream, event)
        metrics = self._metrics
        metrics.total_events.inc()
        metrics.total_active_events.inc()
        series = self._by_stream.get(stream)
        if series is None:
            label = f"stream.{self._stream_label(stream)}.events"
            series = self._by_stream[stream] = metrics.total_events_per_stream.labels(stream=label)
        series.inc()
        return state

    def on_table_get(self, table: CollectionT, key: Any) -> None:
        Monitor.on_table_get(self, table, key)
        self._series(
            self._metrics.table_operations,
            table=f"table.{table.name}",
            operation=self.KEYS_RETRIEVED,
        ).inc()

    def on_table_set(self, table: CollectionT, key: Any, value: Any) -> None:
        Monitor.on_table_set(self, table, key, value)
        self._series(
            self._metrics.table_operations, table=f"table.{table.name}", operation=self.KEYS_UPDATED
        ).inc()

    def on_send_initiated(
        self, producer: ProducerT, topic: str, message: PendingMessage, keysize: int, valsize: int
    ) -> Any:
        self._series(self._metrics.topic_messages_sent, topic=f"topic.{topic}").inc()
        return Monitor.on_send_initiated(self, producer, topic, message, keysize, valsize)

    # Counts of a whole batch in one call (``tables.PartitionReader``, ``kafka.ProducerBuffer``):
    # the same series and values as one call per key or message, without the per-call cost.

    def on_table_gets(self, table: CollectionT, count: int) -> None:
        self._table_or_create(table).keys_retrieved += count
        self._series(
            self._metrics.table_operations,
            table=f"table.{table.name}",
            operation=self.KEYS_RETRIEVED,
        ).inc(count)

    def on_table_sets(self, table: CollectionT, count: int) -> None:
        self._table_or_create(table).keys_updated += count
        self._series(
            self._metrics.table_operations, table=f"table.{table.name}", operation=self.KEYS_UPDATED
        ).inc(count)

    def on_sends_initiated(self, producer: ProducerT, topic: str, count: int) -> float:
        self._series(self._metrics.topic_messages_sent, topic=f"topic.{topic}").inc(count)
        self.messages_sent += count
        self.messages_sent_by_topic[topic] += count
        return self.time()

    def on_sends_completed(self, producer: ProducerT, state: float, count: int) -> None:
        latency = self.time() - state
        self.send_latency.extend(repeat(latency, min(count, self.send_latency.maxlen or count)))
        self._metrics.total_sent_messages.inc(count)
        milliseconds = self.secs_to_ms(latency)  # as Faust's ms_since(state)
        # A histogram counts observations: one per message.
        observe_many(self._metrics.producer_send_latency, milliseconds, count)


def observe_many(histogram: Any, amount: float, count: int) -> None:
    """``histogram.observe(amount)``, ``count`` times, in one step: the same sum and the same
    bucket counts (prometheus_client's ``Histogram``: its sum, and the one bucket the amount
    falls in). Observed one at a time, a batch of 1,000 table writes cost 1 ms."""
    if type(histogram) is Histogram and count > 0:
        histogram._raise_if_not_observable()  # type: ignore[no-untyped-call]
        histogram._sum.inc(amount * count)
        for i, bound in enumerate(histogram._upper_bounds):
            if amount <= bound:
                histogram._buckets[i].inc(count)
                break
        return
    for _ in range(count):
        histogram.observe(amount)


if settings.enable_metrics:
    # Faust's own sensor metrics join ours on the same registry and the same /metrics page.
    setup_prometheus_sensors(
        app, pattern="/metrics", registry=metrics.registry, name_prefix="faust"
    )
    app.monitor = PrometheusMonitor(cast(FaustPrometheusMonitor, app.monitor)._metrics)


class PipelineStatus(Service):
    """``steam_pipeline_status{pipeline="worker"}``: 1 while the worker runs, 0 once stopped."""

    async def on_started(self) -> None:
        metrics.worker_start_time.set(STARTED_AT)
        metrics.discord_webhook_configured.set(1 if settings.discord_enabled else 0)
        # Alerts take increase() of these: a series born at its first value would hide that
        # first pause (a 15-minute ban is exactly one increment), so they start at 0.
        for reason in ("rate_limited", "banned"):
            metrics.rate_limit_pauses.labels("appdetails", reason)
        metrics.rate_limit_pause_seconds.labels("appdetails")
        # Read at each scrape: 0 from the moment the worker starts stopping, through the drain of
        # its in-flight work. Set only in on_stop, the 0 showed for the ~20 ms between this
        # service's stop and the web server's (measured by tests/integration/test_faults_crash.py):
        # no Prometheus scrape ever saw it.
        metrics.pipeline_status.labels("worker").set_function(
            lambda: 0.0 if app.should_stop else 1.0
        )

    async def on_stop(self) -> None:
        # Also 0 when this service stops on its own (not only when the whole app stops).
        metrics.pipeline_status.labels("worker").set_function(lambda: 0.0)


class Collector(Service):
    """Consumer lag and table sizes, measured every few seconds (no per-message cost)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lag: dict[str, int] = {}
        self._last_error = ""
        self._repairs: dict[str, int] = {}

    @Service.timer(COLLECT_SECONDS)
    async def _collect(self) -> None:
        self._count_repairs()
        if app.rebalancing:
            return  # the assignment is moving; the next round measures the new one
        try:
            await self._measure_lag()
            self._measure_tables()
        except Exception as exc:
            # Once per distinct error: a broker outage must not fill the log every 5 s.
            text = f"{exc.__class__.__name__}: {exc}"
            if text != self._last_error:
                logger.warning("Consumer lag and table sizes not measured: %s", text)
            self._last_error = text
        else:
            self._last_error = ""

    async def _measure_lag(self) -> None:
        consumer = app.consumer
        tps = [tp for tp in consumer.assignment() if short_topic(tp.topic, settings.app_id)]
        lag: dict[str, int] = {}
        if tps:
            ends = await consumer.highwaters(*tps)
            # Faust keeps what it committed (and what it found committed at assignment) here;
            # the public monitor only learns offsets this process commits itself.
            known: Any = getattr(consumer, "_committed_offset", {})
            committed = {tp: known.get(tp) for tp in tps}
            unknown = [tp for tp, offset in committed.items() if offset is None]
            earliest = await consumer.earliest_offsets(*unknown) if unknown else {}
            lag = consumer_lag(settings.app_id, ends, committed, earliest)
        # The seed topic is read by a consumer group of its own (steamprice.seeds).
        seeds = await seed_consumer.lag()
        if seeds is not None:
            lag["app-ids"] = seeds
        self.lag = lag
        # Replaced as a whole, so a topic whose partitions moved away stops being reported.
        metrics.consumer_lag.clear()
        for topic, behind in self.lag.items():
            metrics.consumer_lag.labels(topic).set(behind)

    def _count_repairs(self) -> None:
        counts: dict[str, int] = dict(getattr(app.consumer, "counts", {}))
        for kind, n in counts.items():
            new = n - self._repairs.get(kind, 0)
            if new > 0:
                metrics.consumer_repairs.labels(kind).inc(new)
        self._repairs = counts

    def _measure_tables(self) -> None:
        for table in app.tables.values():
            metrics.table_keys.labels(table.name).set(_table_keys(table))


def _table_keys(table: Any) -> int:
    """Keys in the active partitions held here; O(1) per partition with RocksDB."""
    dbs = getattr(table.data, "_dbs_for_actives", None)
    if dbs is None:  # the memory store (tests): counting is cheap there
        return len(table)
    return sum(int(db.property_int_value("rocksdb.estimate-num-keys") or 0) for db in dbs())


collector = Collector()
app.service(PipelineStatus)
app.service(collector)  # type: ignore[arg-type]


@app.page("/health")
class Health(web.View):
    """Read-only: is this worker consuming? Never shows settings or secrets."""

    async def get(self, request: web.Request) -> web.Response:
        assignment: set[Any] = set()
        try:
            assignment = app.consumer.assignment()
        except Exception:
            assignment = set()
        recovering = bool(getattr(app, "in_recovery", False))
        consuming = bool(assignment) and not app.rebalancing and not recovering
        body = {
            "status": "ok" if consuming else "starting",
            "consuming": consuming,
            "rebalancing": bool(app.rebalancing),
            "recovering": recovering,
            "assigned_partitions": len(assignment),
            "consumer_lag_messages": sum(collector.lag.values()),
            "uptime_seconds": round(time.time() - STARTED_AT, 1),
            "discord": "disabled: " + notifier.disabled_reason
            if notifier.disabled_reason
            else ("on" if notifier.enabled else "off"),
        }
        return self.json(body, status=200 if consuming else 503)
