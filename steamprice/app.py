"""Builds the Faust app from the settings (nothing else happens here)."""

from __future__ import annotations

from pathlib import Path

import faust

from steamprice.kafka import App
from steamprice.settings import Settings, load_settings

# The modules that declare agents, timers and pages, loaded explicitly (no package scan).
AGENT_MODULES = [
    "steamprice.agents.intake",
    "steamprice.agents.crawl",
    "steamprice.agents.discovery",
    "steamprice.agents.enrich",
    "steamprice.agents.changes",
    "steamprice.agents.enddates",
    "steamprice.sinks.mysql",
    "steamprice.sinks.discord",
    "steamprice.web",
    "steamprice.pages.views",
    "steamprice.cli",
    "steamprice.alerts",
    "steamprice.status",
]


def create_app(settings: Settings) -> faust.App:
    return App(
        settings.app_id,
        broker=settings.kafka_broker,
        store=settings.table_store,
        datadir=str(Path(settings.data_dir).resolve()),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        key_serializer="json",
        value_serializer="json",
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_stats_enabled=True,
        autodiscover=AGENT_MODULES,
        origin="steamprice",
        # A new worker starts at the beginning of topics it has never consumed: seeds sent
        # before the first worker ran are not lost.
        consumer_auto_offset_reset="earliest",
        # Tables are small per app; standby replicas let a second worker take over quickly.
        table_standby_replicas=1,
        broker_commit_every=1000,
        broker_commit_interval=2.0,
        producer_acks=-1,
        producer_linger=settings.producer_linger_ms / 1000,
        # A record batch per partition holds a round of the producer buffer's table writes
        # (kafka.BUFFER_ROUND_MESSAGES); Faust's 16 kB held ~80. Below the broker's 1 MB limit.
        producer_max_batch_size=512 * 1024,
        fetch_wait=settings.fetch_wait_ms / 1000,
        fetch_min_bytes=settings.fetch_min_bytes,
        # Sinks may legitimately wait on a database outage or a Discord pause for minutes.
        broker_max_poll_interval=3600.0,
        stream_recovery_delay=0.0,
        # On a fresh cluster a topic the worker just created can be missing from the metadata
        # the group is assigned with; the consumer only takes it on at its next metadata
        # refresh (default: 5 minutes without consuming seeds). Found by the fault suite. The
        # consumer now waits for the topics' leaders before it subscribes (kafka.py); this
        # refresh stays for topics created later, by someone else.
        consumer_metadata_max_age_ms=10_000,
        allow_untested_versions=settings.allow_untested_faust,
        # A restarted worker takes its partitions back at once (docs/operations.md).
        static_membership=True,
        consumer_group_instance_id=settings.group_instance_id or None,
        broker_session_timeout=settings.broker_session_timeout,
    )


settings = load_settings()
app = create_app(settings)
