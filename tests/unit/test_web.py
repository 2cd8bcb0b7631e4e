"""The worker's own status gauges: ``steam_pipeline_status`` is 1 while it runs, 0 after a stop."""

from __future__ import annotations

from typing import Any


async def test_pipeline_status_is_1_while_running_and_0_after_a_clean_stop() -> None:
    from steamprice import web
    from steamprice.services import metrics

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    service = web.PipelineStatus()
    await service.start()
    try:
        assert sample("steam_pipeline_status", pipeline="worker") == 1
        assert sample("steam_worker_start_time_seconds") == web.STARTED_AT
        expected = 1.0 if web.settings.discord_enabled else 0.0
        assert sample("steam_discord_webhook_configured") == expected
        # Primed at 0 so that an alert's increase() sees the first pause.
        assert sample("steam_rate_limit_pause_seconds_total", endpoint="appdetails") == 0
        for reason in ("rate_limited", "banned"):
            assert (
                sample("steam_rate_limit_pauses_total", endpoint="appdetails", reason=reason) == 0
            )
    finally:
        await service.stop()
    assert sample("steam_pipeline_status", pipeline="worker") == 0


def test_what_the_consumer_repaired_is_counted_once() -> None:
    from steamprice import web
    from steamprice.kafka import Consumer
    from steamprice.services import metrics

    def reread() -> float:
        value = metrics.registry.get_sample_value(
            "steam_consumer_repairs_total", {"kind": "reread"}
        )
        return value or 0.0

    consumer = web.app.consumer
    assert isinstance(consumer, Consumer)  # the app runs on the fixed consumer
    collector = web.Collector()
    collector._count_repairs()
    before = reread()
    consumer.counts["reread"] += 2
    collector._count_repairs()
    collector._count_repairs()
    assert reread() == before + 2


def test_the_faust_sensor_counts_what_fausts_own_counts() -> None:
    """The per-key and per-message hooks look their series up once; the series and values stay
    Faust's."""
    from types import SimpleNamespace

    from faust.sensors.prometheus import FaustMetrics
    from faust.sensors.prometheus import PrometheusMonitor as FaustPrometheusMonitor
    from faust.types import TP
    from prometheus_client import CollectorRegistry

    from steamprice import web

    class Agent:  # a stream's task owner (held by weak reference)
        pass

    class Stream:
        def __init__(self, label: str) -> None:
            self.shortlabel = f"Stream: Topic: {label}"
            self.task_owner = Agent()

    intake, crawl = Stream("it.app-ids"), Stream("it.crawl-requests")
    seeds_3, seeds_1 = TP("it.app-ids", 3), TP("it.app-ids", 1)

    def run(monitor_class: type[FaustPrometheusMonitor]) -> tuple[dict[str, float], Any]:
        registry = CollectorRegistry()
        monitor = monitor_class(FaustMetrics.create(registry, "faust"))
        table = SimpleNamespace(name="price-state")
        for key in ("1:us", "2:us", "1:us"):
            monitor.on_table_get(table, key)  # type: ignore[arg-type]
        monitor.on_table_set(table, "1:us", b"{}")  # type: ignore[arg-type]
        for topic in ("a-changelog", "a-changelog", "b"):
            monitor.on_send_initiated(None, topic, None, 1, 2)  # type: ignore[arg-type]
        # A seed's path: a message in, an event in a stream (two streams, two partitions).
        for stream, tp, offset in ((intake, seeds_3, 7), (intake, seeds_3, 8), (crawl, seeds_1, 2)):
            message = SimpleNamespace(time_in=None)
            monitor.on_message_in(tp, offset, message)  # type: ignore[arg-type]
            monitor.on_stream_event_in(tp, offset, stream, None)  # type: ignore[arg-type]
        samples = {
            f"{s.name}{sorted(s.labels.items())}": s.value
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }
        return samples, monitor

    ours, monitor = run(web.PrometheusMonitor)
    faust_own, faust_monitor = run(FaustPrometheusMonitor)
    assert ours == faust_own
    assert (
        ours[
            "faust_table_operations_total[('operation', 'keys_retrieved'), ('table', 'table.price-state')]"
        ]
        == 3
    )
    assert monitor.messages_sent_by_topic == faust_monitor.messages_sent_by_topic
    assert monitor.tables["price-state"].keys_retrieved == 3
    assert (
        ours[
            "faust_messages_received_per_topics_partition[('partition', '3'), ('topic', 'it.app-ids')]"
        ]
        == 8
    )
    assert (
        ours["faust_total_events_per_stream_total[('stream', 'stream.topic_it.app-ids.events')]"]
        == 2
    )
    assert monitor.events_by_stream == faust_monitor.events_by_stream


def test_a_batch_counted_in_one_call_counts_what_one_call_per_key_or_message_counts() -> None:
    """``on_table_gets``, ``on_table_sets`` and ``on_sends_*`` (a batch's counts) against Faust's
    per-call hooks."""
    from types import SimpleNamespace

    from faust.sensors.prometheus import FaustMetrics
    from faust.sensors.prometheus import PrometheusMonitor as FaustPrometheusMonitor
    from prometheus_client import CollectorRegistry

    from steamprice import web

    table = SimpleNamespace(name="price-state")

    def samples(registry: CollectorRegistry) -> dict[str, float]:
        return {
            f"{s.name}{sorted(s.labels.items())}": s.value
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    def one_by_one() -> tuple[dict[str, float], Any]:
        registry = CollectorRegistry()
        monitor = FaustPrometheusMonitor(FaustMetrics.create(registry, "faust"))
        monitor.time = lambda: 10.0  # type: ignore[method-assign]
        for key in ("1:us", "2:us", "3:us"):
            monitor.on_table_get(table, key)  # type: ignore[arg-type]
        for key in ("1:us", "2:us"):
            monitor.on_table_set(table, key, {})  # type: ignore[arg-type]
        states = [monitor.on_send_initiated(None, "a-changelog", None, 1, 2) for _ in range(4)]  # type: ignore[arg-type]
        monitor.time = lambda: 10.25  # type: ignore[method-assign]
        for state in states:
            monitor.on_send_completed(None, state, None)  # type: ignore[arg-type]
        return samples(registry), monitor

    def in_one_call() -> tuple[dict[str, float], Any]:
        registry = CollectorRegistry()
        monitor = web.PrometheusMonitor(FaustMetrics.create(registry, "faust"))
        monitor.time = lambda: 10.0  # type: ignore[method-assign]
        monitor.on_table_gets(table, 3)  # type: ignore[arg-type]
        monitor.on_table_sets(table, 2)  # type: ignore[arg-type]
        state = monitor.on_sends_initiated(None, "a-changelog", 4)  # type: ignore[arg-type]
        monitor.time = lambda: 10.25  # type: ignore[method-assign]
        monitor.on_sends_completed(None, state, 4)  # type: ignore[arg-type]
        return samples(registry), monitor

    (faust_own, faust_monitor), (ours, monitor) = one_by_one(), in_one_call()
    assert ours == faust_own
    assert ours["faust_total_sent_messages_total[]"] == 4
    assert ours["faust_producer_send_latency_count[]"] == 4
    assert monitor.tables["price-state"].keys_retrieved == 3
    assert monitor.tables["price-state"].keys_updated == 2
    assert monitor.messages_sent == faust_monitor.messages_sent == 4
    assert monitor.messages_sent_by_topic == faust_monitor.messages_sent_by_topic
    assert list(monitor.send_latency) == list(faust_monitor.send_latency) == [0.25] * 4


def test_observing_many_at_once_counts_as_observing_each() -> None:
    from prometheus_client import CollectorRegistry, Histogram, Summary

    from steamprice.web import observe_many

    def samples(kind: Any, many: bool) -> dict[str, float]:
        registry = CollectorRegistry()
        buckets = {"buckets": (1, 5, 25)} if kind is Histogram else {}
        metric = kind("latency_ms", "", registry=registry, **buckets)
        for amount, count in ((0.5, 3), (5, 2), (7.25, 4), (100, 1), (3, 0)):
            if many:
                observe_many(metric, amount, count)
            else:
                for _ in range(count):
                    metric.observe(amount)
        return {
            f"{s.name}{sorted(s.labels.items())}": s.value
            for m in registry.collect()
            for s in m.samples
            if not s.name.endswith("_created")
        }

    for kind in (Histogram, Summary):
        assert samples(kind, True) == samples(kind, False)
    assert samples(Histogram, True)["latency_ms_bucket[('le', '5.0')]"] == 5
    assert samples(Histogram, True)["latency_ms_sum[]"] == 0.5 * 3 + 5 * 2 + 7.25 * 4 + 100
