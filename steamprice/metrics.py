"""All Prometheus metrics of the pipeline, in one bundle bound to a registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    # Contract names (kept from the original pipeline's dashboards).
    games_processed: Counter  # steam_games_processed_total{task,status}
    api_requests: Counter  # steam_api_requests_total{endpoint,status}
    api_response_seconds: Histogram  # steam_api_response_seconds{endpoint}
    kafka_messages: Counter  # steam_kafka_messages_total{topic,operation}
    task_duration_seconds: Histogram  # steam_task_duration_seconds{task}
    pipeline_status: Gauge  # steam_pipeline_status{pipeline}
    queue_size: Gauge  # steam_queue_size{queue}
    # Added by this project.
    rate_limit_pauses: Counter  # steam_rate_limit_pauses_total{endpoint,reason}
    rate_limit_pause_seconds: Counter  # steam_rate_limit_pause_seconds_total{endpoint}
    bad_input: Counter  # steam_bad_input_total{source,reason}
    batch_size: Histogram  # steam_batch_size{task}
    sink_retries: Counter  # steam_sink_retries_total{sink}
    sink_rows: Counter  # steam_sink_rows_total{table}
    sink_rejected_rows: Counter  # steam_sink_rejected_rows_total{sink,reason}
    mysql_up: Gauge  # steam_mysql_up (0 while writes fail for lack of a database)
    price_changes: Counter  # steam_price_changes_total{kind}
    discord_deliveries: Counter  # steam_discord_deliveries_total{status}
    discord_webhook_enabled: Gauge  # steam_discord_webhook_enabled
    discord_rate_limited: Counter  # steam_discord_rate_limited_total{scope}
    discord_messages: Counter  # steam_discord_messages_total{format}
    last_success: Gauge  # steam_last_success_timestamp_seconds{endpoint}
    # Alert rules (notify/): per rule and per channel, label sets bounded (see docs/discord.md).
    rule_changes: Counter  # steam_discord_rule_changes_total{rule,outcome}
    rule_enabled: Gauge  # steam_discord_rule_enabled{rule}
    rule_count: Gauge  # steam_discord_rules
    channel_backlog: Gauge  # steam_discord_channel_backlog{channel}
    channel_oldest: Gauge  # steam_discord_channel_oldest_seconds{channel}
    channel_digest: Gauge  # steam_discord_channel_digest{channel}
    backlog_alert_seconds: Gauge  # steam_discord_backlog_alert_seconds
    # Observability (web.py's collector and status gauges).
    consumer_lag: Gauge  # steam_consumer_lag_messages{topic}
    table_keys: Gauge  # steam_table_keys{table}
    consumer_repairs: Counter  # steam_consumer_repairs_total{kind}
    worker_start_time: Gauge  # steam_worker_start_time_seconds
    discord_webhook_configured: Gauge  # steam_discord_webhook_configured
    batch_fallbacks: Counter  # steam_batch_fallbacks_total{reason}
    store_banned: Gauge  # steam_store_banned

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        r = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=r,
            games_processed=Counter(
                "steam_games_processed", "Apps processed by a task", ["task", "status"], registry=r
            ),
            api_requests=Counter(
                "steam_api_requests",
                "HTTP requests to Steam, SteamSpy and Discord",
                ["endpoint", "status"],
                registry=r,
            ),
            api_response_seconds=Histogram(
                "steam_api_response_seconds",
                "HTTP response time",
                ["endpoint"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            kafka_messages=Counter(
                "steam_kafka_messages",
                "Messages consumed and produced",
                ["topic", "operation"],
                registry=r,
            ),
            task_duration_seconds=Histogram(
                "steam_task_duration_seconds",
                "Time spent per batch or message of a task",
                ["task"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            pipeline_status=Gauge(
                "steam_pipeline_status",
                "1 while the pipeline runs, 0 once stopped",
                ["pipeline"],
                registry=r,
            ),
            queue_size=Gauge("steam_queue_size", "Pending and failed work", ["queue"], registry=r),
            rate_limit_pauses=Counter(
                "steam_rate_limit_pauses",
                "Pauses forced by a 429 or 403",
                ["endpoint", "reason"],
                registry=r,
            ),
            rate_limit_pause_seconds=Counter(
                "steam_rate_limit_pause_seconds",
                "Seconds spent paused by rate limits",
                ["endpoint"],
                registry=r,
            ),
            bad_input=Counter(
                "steam_bad_input",
                "Unusable input routed to app-ids-failed or skipped",
                ["source", "reason"],
                registry=r,
            ),
            batch_size=Histogram(
                "steam_batch_size",
                "Items per batch",
                ["task"],
                buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
                registry=r,
            ),
            sink_retries=Counter(
                "steam_sink_retries", "Sink batches retried after an error", ["sink"], registry=r
            ),
            sink_rows=Counter("steam_sink_rows", "Rows written to MySQL", ["table"], registry=r),
            sink_rejected_rows=Counter(
                "steam_sink_rejected_rows",
                "Rows a sink could not store (invalid, or refused by the database)",
                ["sink", "reason"],
                registry=r,
            ),
            mysql_up=Gauge(
                "steam_mysql_up", "1 while MySQL accepts writes, 0 while they fail", registry=r
            ),
            price_changes=Counter(
                "steam_price_changes", "Price changes detected", ["kind"], registry=r
            ),
            discord_deliveries=Counter(
                "steam_discord_deliveries",
                "Discord notifications by outcome",
                ["status"],
                registry=r,
            ),
            discord_webhook_enabled=Gauge(
                "steam_discord_webhook_enabled", "1 while the webhook is usable", registry=r
            ),
            discord_rate_limited=Counter(
                "steam_discord_rate_limited",
                "Discord 429 answers by scope (user, shared, global, cloudflare)",
                ["scope"],
                registry=r,
            ),
            discord_messages=Counter(
                "steam_discord_messages",
                "Discord messages posted, by format (embeds or digest)",
                ["format"],
                registry=r,
            ),
            last_success=Gauge(
                "steam_last_success_timestamp_seconds",
                "Unix time of the last successful request",
                ["endpoint"],
                registry=r,
            ),
            rule_changes=Counter(
                "steam_discord_rule_changes",
                "Changes per alert rule by outcome: queued (matched), skipped (checked, filtered"
                " out), sent, failed (rejected by Discord or uncertain after a crash)",
                ["rule", "outcome"],
                registry=r,
            ),
            rule_enabled=Gauge(
                "steam_discord_rule_enabled",
                "1 while the alert rule's webhook is usable, 0 once found deleted or unauthorised",
                ["rule"],
                registry=r,
            ),
            rule_count=Gauge("steam_discord_rules", "Alert rules this worker applies", registry=r),
            channel_backlog=Gauge(
                "steam_discord_channel_backlog",
                "Changes waiting to be posted into a Discord channel (set by the sending worker)",
                ["channel"],
                registry=r,
            ),
            channel_oldest=Gauge(
                "steam_discord_channel_oldest_seconds",
                "Age of the oldest change waiting for a Discord channel (0: none waits)",
                ["channel"],
                registry=r,
            ),
            channel_digest=Gauge(
                "steam_discord_channel_digest",
                "1 while a channel is behind and its rules post digests",
                ["channel"],
                registry=r,
            ),
            backlog_alert_seconds=Gauge(
                "steam_discord_backlog_alert_seconds",
                "DISCORD_BACKLOG_ALERT_SECONDS: the age of a channel's backlog that is alerted on",
                registry=r,
            ),
            consumer_lag=Gauge(
                "steam_consumer_lag_messages",
                "Messages not yet processed (end offset - committed offset) in this worker's"
                " partitions, by topic without the APP_ID prefix",
                ["topic"],
                registry=r,
            ),
            consumer_repairs=Counter(
                "steam_consumer_repairs_total",
                "Messages Faust's consumer would have lost and steamprice.kafka recovered, by"
                " kind: rewound (fetched, never delivered), redelivered (not dropped as a"
                " duplicate), ignored_acks (skipped by a stream), reread (a stuck partition"
                " sought back)",
                ["kind"],
                registry=r,
            ),
            table_keys=Gauge(
                "steam_table_keys",
                "Keys in this worker's active partitions of a table (RocksDB estimate: keys"
                " overwritten since the last compaction may count twice)",
                ["table"],
                registry=r,
            ),
            worker_start_time=Gauge(
                "steam_worker_start_time_seconds",
                "Unix time this worker started (alerts fall back to it before a first success)",
                registry=r,
            ),
            discord_webhook_configured=Gauge(
                "steam_discord_webhook_configured",
                "1 when DISCORD_WEBHOOK_URL is set and ENABLE_DISCORD is on",
                registry=r,
            ),
            batch_fallbacks=Counter(
                "steam_batch_fallbacks",
                "Store batches split up: refused with 400 (batching off) or isolating a bad entry",
                ["reason"],
                registry=r,
            ),
            store_banned=Gauge(
                "steam_store_banned",
                "1 while the store answers 403 Access Denied and every store request is held",
                registry=r,
            ),
        )
