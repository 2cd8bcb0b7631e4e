"""The pure parts of observability: consumer lag, the status report and its text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest

from steamprice.metrics import Metrics
from steamprice.models import AppState
from steamprice.report import (
    MAX_LISTED_FAILED,
    RegionRows,
    TrackedApp,
    consumer_lag,
    count_apps,
    decode_app_state,
    discord_state,
    human_age,
    last_success_report,
    parse_worker_metrics,
    render,
    short_topic,
    sweep_progress,
)

NOW = datetime(2026, 5, 2, 10, 0, tzinfo=UTC)


def test_short_topic_keeps_only_the_pipelines_own_topics() -> None:
    assert short_topic("steam-prices.prices-raw", "steam-prices") == "prices-raw"
    assert short_topic("steam-prices-app-state-changelog", "steam-prices") is None
    assert short_topic("other.prices-raw", "steam-prices") is None
    # An APP_ID that is a prefix of another must not capture its topics.
    assert short_topic("steam-prices-2.app-ids", "steam-prices") is None


def test_consumer_lag_sums_partitions_per_topic() -> None:
    ends = {
        ("p.prices-raw", 0): 100,
        ("p.prices-raw", 1): 50,
        ("p.app-ids", 0): 7,
        ("p-app-state-changelog", 0): 999,
    }
    committed = {("p.prices-raw", 0): 90, ("p.prices-raw", 1): 50, ("p.app-ids", 0): None}
    earliest = {("p.app-ids", 0): 2}
    assert consumer_lag("p", ends, committed, earliest) == {"prices-raw": 10, "app-ids": 5}


def test_consumer_lag_is_never_negative_and_defaults_to_the_whole_partition() -> None:
    ends = {("p.schedule", 0): 10, ("p.schedule", 1): 4}
    # A committed offset can briefly be ahead of a stale end offset.
    committed: dict[tuple[str, int], int | None] = {("p.schedule", 0): 12}
    assert consumer_lag("p", ends, committed, {}) == {"schedule": 4}


def test_count_apps() -> None:
    states = [
        TrackedApp(1, NOW - timedelta(seconds=1)),
        TrackedApp(2, NOW),
        TrackedApp(3, NOW + timedelta(hours=1)),
        TrackedApp(5, NOW - timedelta(minutes=1), pending=True),  # sent to the crawler
        TrackedApp(9, NOW - timedelta(days=1), failed=True),
        TrackedApp(4, NOW + timedelta(hours=1), failed=True),
    ]
    counts = count_apps(states, NOW)
    assert (counts.tracked, counts.due, counts.in_flight, counts.failed) == (6, 2, 1, 2)
    assert counts.failed_app_ids == [4, 9]


def test_count_apps_counts_pending_rechecks_and_the_next_one() -> None:
    soon, later = NOW + timedelta(seconds=40), NOW + timedelta(seconds=55)
    states = [
        TrackedApp(1, later, recheck_at=later),
        TrackedApp(2, NOW + timedelta(hours=6), pending=True, recheck_at=soon),  # after its answer
        TrackedApp(3, NOW + timedelta(hours=6)),
        TrackedApp(4, NOW, failed=True, recheck_at=NOW),  # parked: owed nothing until a seed
    ]
    counts = count_apps(states, NOW)
    assert (counts.rechecks, counts.next_recheck_at) == (2, soon.isoformat())
    assert (counts.tracked, counts.due, counts.in_flight, counts.failed) == (4, 0, 1, 1)
    assert count_apps([TrackedApp(3, NOW)], NOW).rechecks == 0


def test_decode_app_state_reads_what_the_table_writes() -> None:
    state = AppState(
        app_id=730,
        tracked_since=NOW - timedelta(days=1),
        next_due=NOW + timedelta(hours=6),
        failed=True,
    )
    assert decode_app_state(state.dumps()) == TrackedApp(730, NOW + timedelta(hours=6), True, False)
    waiting = AppState(app_id=9, tracked_since=NOW, next_due=NOW, recheck_at=NOW)
    assert decode_app_state(waiting.dumps()).recheck_at == NOW
    # Older records may lack newer fields; naive times are UTC.
    old = (
        b'{"app_id": 5, "tracked_since": "2026-05-01T00:00:00", "next_due": "2026-05-02T10:00:00"}'
    )
    assert decode_app_state(old) == TrackedApp(5, NOW)


def test_count_apps_lists_a_bounded_number_of_failed_ids() -> None:
    states = [TrackedApp(i, NOW, failed=True) for i in range(MAX_LISTED_FAILED * 3, 0, -1)]
    counts = count_apps(states, NOW)
    assert counts.failed == MAX_LISTED_FAILED * 3
    assert counts.failed_app_ids == list(range(1, MAX_LISTED_FAILED + 1))


def test_sweep_progress_per_region() -> None:
    rows = [
        RegionRows("gb", 10, 4, NOW - timedelta(hours=7)),
        RegionRows("us", 10, 12, NOW - timedelta(hours=1)),
        RegionRows("de", 3, 0, None),
    ]
    out = sweep_progress(("us", "gb", "jp"), rows, active_apps=10)
    assert [r["cc"] for r in out] == ["us", "gb", "jp", "de"]
    by_cc = {r["cc"]: r for r in out}
    assert by_cc["us"]["progress"] == 1.0  # capped: failed apps may still have fresh rows
    assert by_cc["gb"]["progress"] == 0.4
    assert by_cc["jp"] == {
        "cc": "jp",
        "configured": True,
        "rows": 0,
        "swept": 0,
        "progress": 0.0,
        "last_checked_at": None,
    }
    assert by_cc["de"]["configured"] is False
    assert by_cc["gb"]["last_checked_at"] == (NOW - timedelta(hours=7)).isoformat()


def test_sweep_progress_without_apps_or_without_kafka() -> None:
    rows = [RegionRows("us", 1, 1, None)]
    assert sweep_progress(("us",), rows, active_apps=0)[0]["progress"] == 1.0
    assert sweep_progress(("us",), rows, active_apps=None)[0]["progress"] is None


def test_parse_worker_metrics_reads_a_real_exposition() -> None:
    m = Metrics.create(CollectorRegistry())
    m.last_success.labels("appdetails").set(1_700_000_000.5)
    m.last_success.labels("discord").set(1_700_000_100)
    m.consumer_lag.labels("crawl-requests").set(42)
    m.discord_webhook_enabled.set(1)
    m.discord_webhook_configured.set(1)
    m.pipeline_status.labels("worker").set(1)
    facts = parse_worker_metrics(generate_latest(m.registry).decode())
    assert facts.last_success == {"appdetails": 1_700_000_000.5, "discord": 1_700_000_100}
    assert facts.consumer_lag == {"crawl-requests": 42}
    assert (facts.webhook_enabled, facts.webhook_configured, facts.pipeline_status) == (1, 1, 1)


def test_last_success_report() -> None:
    stamps = {"appdetails": NOW.timestamp() - 90, "discord": 0.0}
    assert last_success_report(stamps, NOW) == {
        "appdetails": {"at": (NOW - timedelta(seconds=90)).isoformat(), "age_seconds": 90.0}
    }


def test_discord_state() -> None:
    assert discord_state(False, 0, "off") == "off"
    assert discord_state(True, 1, "on") == "on"
    assert discord_state(True, 0, "disabled: 404 code 10015") == "disabled: 404 code 10015"
    assert discord_state(True, 0, None) == "disabled"
    assert discord_state(True, None, None) == "unknown (worker not reachable)"


def test_human_age() -> None:
    assert human_age(None) == "never"
    assert human_age(-3) == "0 s"
    assert human_age(119) == "119 s"
    assert human_age(600) == "10 min"
    assert human_age(5 * 3600 + 120) == "5 h 02 min"
    assert human_age(2 * 86400 + 3 * 3600) == "2 d 03 h"


def _report(**changes: object) -> dict[str, object]:
    report: dict[str, object] = {
        "app_id": "steam-prices",
        "generated_at": NOW.isoformat(),
        "recrawl_interval_seconds": 21600.0,
        "apps": {"tracked": 1204, "due": 3, "in_flight": 40, "failed": 2, "failed_app_ids": [5, 7]},
        "regions": sweep_progress(
            ("us",), [RegionRows("us", 1204, 600, NOW - timedelta(minutes=6))], 1202
        ),
        "last_success": last_success_report({"appdetails": NOW.timestamp() - 14}, NOW),
        "worker": {
            "url": "http://127.0.0.1:6066",
            "reachable": True,
            "consuming": True,
            "assigned_partitions": 8,
            "consumer_lag": {"crawl-requests": 452.0, "prices-raw": 0.0},
        },
        "discord": {
            "configured": True,
            "state": "on",
            "deliveries": {"sent": 31, "rejected": 1},
            "last_delivered_at": (NOW - timedelta(minutes=3)).isoformat(),
            "disabled_webhooks": [{"reason": "404 code 10015", "at": "2026-05-01T08:00:00+00:00"}],
        },
        "problems": [],
    }
    report.update(changes)
    return report


def test_render_shows_every_section() -> None:
    text = render(_report())
    assert "steamprice status of steam-prices at 2026-05-02 10:00:00 UTC" in text
    assert "1,204 tracked, 3 due now, 40 being priced, 2 failed (5, 7)" in text
    assert "us    49.9%" in text and "last check 6 min ago" in text
    assert "appdetails   14 s ago" in text
    assert "consuming, 8 partitions, lag: crawl-requests 452" in text
    assert "webhook on" in text
    assert "deliveries: 1 rejected, 31 sent; last sent 3 min ago" in text
    assert "a webhook was disabled at 2026-05-01T08:00:00+00:00: 404 code 10015" in text
    assert text.endswith("Problems      none")


def test_render_shows_pending_rechecks_only_when_there_are_some() -> None:
    apps = {"tracked": 3, "due": 0, "in_flight": 0, "failed": 0, "failed_app_ids": []}
    owed = {**apps, "rechecks": 2, "next_recheck_at": (NOW + timedelta(seconds=42)).isoformat()}
    text = render(_report(apps=owed))
    assert (
        "Re-checks     2 pending (seeded again within SEED_DEDUPE_SECONDS), the next in 42 s"
        in (text)
    )
    assert "Re-checks" not in render(_report(apps={**apps, "rechecks": 0}))
    overdue = {**owed, "next_recheck_at": (NOW - timedelta(seconds=5)).isoformat()}
    assert "the next now" in render(_report(apps=overdue))


def test_render_names_what_could_not_be_read() -> None:
    text = render(
        _report(
            apps=None,
            regions=None,
            last_success=None,
            worker={"url": "http://w:1", "reachable": False},
            discord={
                "configured": True,
                "state": "unknown (worker not reachable)",
                "deliveries": None,
            },
            problems=["kafka: KafkaConnectionError: no broker", "worker: refused"],
        )
    )
    assert "Apps          unknown (Kafka not readable)" in text
    assert "unknown (MySQL not readable)" in text
    assert "Worker        http://w:1: not reachable" in text
    assert "deliveries unknown" in text
    assert text.endswith(
        "Problems      kafka: KafkaConnectionError: no broker\n              worker: refused"
    )
