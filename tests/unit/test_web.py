"""The worker's own status gauges: ``steam_pipeline_status`` is 1 while it runs, 0 after a stop."""

from __future__ import annotations


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
