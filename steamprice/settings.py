"""One frozen settings object built from the environment (or a ``.env`` file)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from decouple import AutoConfig, Csv, UndefinedValueError

COUNTRY_RE = re.compile(r"^[a-z]{2}$")
# Faust table stores a worker may use (schemes of TABLE_STORE).
TABLE_STORES = ("rocksdb", "memory")


class SettingsError(ValueError):
    """A setting has a value that cannot work; the message names the setting."""


class Secret:
    """A string that never shows itself in ``repr``/``str``, so it cannot leak into logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def bootstrap_servers(kafka_broker: str) -> str:
    """Kafka URLs (``kafka://host:port;kafka://...``) as aiokafka takes them."""
    return ",".join(u.split("://", 1)[-1] for u in kafka_broker.split(";"))


@dataclass(frozen=True)
class Settings:
    """Every setting of a worker; field comments document them (and docs/configuration.md)."""

    # Kafka bootstrap URL(s), e.g. ``kafka://127.0.0.1:9092``.
    kafka_broker: str = "kafka://127.0.0.1:9092"
    # Faust app id: consumer group and prefix of every topic.
    app_id: str = "steam-prices"
    # Partitions of every topic the app creates; tables are co-partitioned with them.
    topic_partitions: int = 8
    # This worker's own folder: RocksDB table state and its group identity, locked while it
    # runs. Empty: ``./data/<APP_ID>``, so two pipelines run from one directory never share one.
    data_dir: str = ""
    # This worker's static member id in the consumer group (Kafka's group.instance.id): a worker
    # restarted after a crash takes its partitions back at once. Unique per worker. Empty: one
    # is made on the first start and kept in DATA_DIR.
    group_instance_id: str = ""
    # How long the broker waits for a silent worker before its partitions go to the others; a
    # restarted worker does not wait (static membership). Kafka's own default.
    broker_session_timeout: float = 45.0
    # Start a worker on faust-streaming/aiokafka releases other than those steamprice/kafka.py
    # was proven against (it patches their internals; docs/architecture.md): with a warning.
    allow_untested_faust: bool = False
    # Faust table store: ``rocksdb://`` (on disk in DATA_DIR, what workers run) or ``memory://``
    # (nothing on disk; the agent tests drive agents in-process with it).
    table_store: str = "rocksdb://"
    # Faust web server port: stats page, /metrics, /health.
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    enable_metrics: bool = True

    mysql_host: str = "127.0.0.1"
    mysql_port: int = 3306
    mysql_user: str = "root"
    mysql_password: Secret = field(default_factory=lambda: Secret(""))
    mysql_db: str = "steam_db"

    # Base of ``/api/appdetails``.
    steam_store_url: str = "https://store.steampowered.com"
    # Base of ``/IStoreService/GetAppList/v1/``.
    steam_api_url: str = "https://api.steampowered.com"
    # Web API key, only for app-list discovery.
    steam_api_key: Secret = field(default_factory=lambda: Secret(""))
    steamspy_url: str = "https://steamspy.com/api.php"
    # Regions (``cc`` codes) to price.
    steam_countries: tuple[str, ...] = ("us",)
    # Pace of store requests from this worker (Steam allows ~200 per 5 minutes per IP).
    steam_max_requests_per_minute: float = 40.0
    # App ids per ``appdetails`` request.
    steam_batch_size: int = 100
    # First pause after a 429; grows on repeats.
    steam_backoff_seconds: float = 30.0
    # Pace of GetItems requests (discount end dates, api.steampowered.com: its own budget, not
    # the store's); each asks about up to 250 apps. 0 switches end dates off.
    steam_getitems_max_requests_per_minute: float = 20.0
    # Longest the crawler waits to fill a batch before sending a partial one.
    steam_batch_wait_seconds: float = 2.0
    # Timeout of one store request.
    steam_request_timeout_seconds: float = 20.0
    # How often each tracked app is re-priced.
    recrawl_interval_seconds: float = 21600.0
    # How often the scheduler looks for due apps.
    schedule_tick_seconds: float = 10.0
    # A second seed of an app within this window of its last request is the same round.
    seed_dedupe_seconds: float = 60.0
    # Consecutive failed fetches before an app moves to the failed state.
    max_failures: int = 5
    # Crawler (see docs/crawler.md). Pause after a 403 "Access Denied" page (doubles on
    # repeats, at most 4x); every store request waits it out.
    steam_ban_pause_seconds: float = 900.0
    # First wait before a store request that failed (5xx, timeout, truncated or non-JSON body)
    # is sent again; doubles per attempt, four attempts in all.
    steam_retry_base_seconds: float = 1.0
    # First wait before an app whose fetch failed is crawled again; doubles per failure.
    failed_retry_base_seconds: float = 60.0
    # App types that ``seed --all`` and the change poller list: game, dlc, software, video,
    # hardware (Steam's own default is games only).
    steam_app_types: tuple[str, ...] = ("game",)
    # How often the leader asks IStoreService/GetAppList for apps modified since its last look
    # and re-prices those whose price_change_number moved (0 = off; needs STEAM_API_KEY).
    discovery_interval_seconds: float = 900.0
    # Whether apps the change poller sees but nobody seeded start being tracked.
    discovery_track_new_apps: bool = False
    # SteamSpy enrichment of the apps table (name, developer, publisher, owners, ccu, tags) at
    # 1 request/s on the leader; opt-in. Names then title the Discord embeds.
    enable_steamspy: bool = False

    discord_webhook_url: Secret = field(default_factory=lambda: Secret(""))
    enable_discord: bool = True
    # Opt-in Discord filters (all empty/zero: every change is notified once). A change must pass
    # every filter set; one that does not is recorded in the ledger as ``skipped`` with the reason.
    # Notify only changes whose new real discount is at least this many percent (0 = off).
    discord_min_discount: int = 0
    # Notify only these change kinds (``discount_started``, ``list_price_increased`` ...).
    discord_kinds: tuple[str, ...] = ()
    # Notify only these regions (``cc`` codes).
    discord_regions: tuple[str, ...] = ()
    # Notify only these app ids.
    discord_watchlist: tuple[int, ...] = ()
    # Notify only changes that reach (new or matched) the historical low.
    discord_only_historical_lows: bool = False
    # How long the alert of a new discount may wait for its end date (GetItems, asked right
    # after the price): never while GetItems fails, so an outage or a 429 storm delays end
    # dates, not alerts. 0 = never wait.
    discord_end_date_wait_seconds: float = 10.0
    # Opt-in: when more apps than this wait to be notified (a sale wave), pending changes go out
    # as digest messages of ~40-50 apps instead of one embed per app (0 = never digest). Off by
    # default because the contract promises each app its own embed linked to its store page.
    discord_digest_threshold: int = 0
    # A channel whose backlog would take longer than this to post one embed per app (at the
    # channel's pace, over every rule posting into it) switches those rules to digests, and
    # says so, until it has caught up (0 = never).
    discord_digest_after_seconds: float = 300.0
    # A channel whose oldest undelivered change is older than this fires the Prometheus alert
    # DiscordChannelBehind (exported as steam_discord_backlog_alert_seconds).
    discord_backlog_alert_seconds: float = 1800.0
    # At most this many alert rules get metric series of their own; the others are counted
    # together under rule="_other" (rule names are chosen by operators: bounded cardinality).
    discord_rule_metrics_max: int = 50
    # Discord's hidden per-channel limit (never announced in headers): messages per window.
    discord_channel_messages: int = 30
    discord_channel_window_seconds: float = 60.0
    # Longest wait obeyed from one 429 (days have been seen); the messages stay queued.
    discord_max_retry_wait_seconds: float = 3600.0
    # Pause after a Cloudflare ban (429 without rate-limit headers, "You are being blocked").
    discord_ban_pause_seconds: float = 1800.0
    # Timeout of one webhook request.
    discord_request_timeout_seconds: float = 15.0
    # After a crash during a post, changes whose post may or may not have reached Discord are
    # marked ``uncertain`` and not re-posted (no duplicate); true re-posts them (no loss).
    discord_resend_uncertain: bool = False

    # How long the Kafka producer waits to fill a batch: larger batches cost far less CPU per
    # message (measured: 50 ms more than doubled throughput over 5 ms) for a little latency.
    producer_linger_ms: int = 50
    # How long the broker may hold a fetch to gather FETCH_MIN_BYTES for the worker: few large
    # fetches, not one per record the worker itself just produced (measured on a re-sweep: the
    # consumer thread went from ~15% of a core to ~4%). A quiet topic waits that long per hop;
    # an idle worker polls 4 times a second (2.5% of a core, 1.6% at Faust's 1,500 ms).
    fetch_wait_ms: int = 250
    fetch_min_bytes: int = 1_048_576
    # Sink batching: at most this many messages per transaction (a prices-normalized message
    # holds up to STEAM_BATCH_SIZE observations), waiting at most this long.
    sink_batch_size: int = 500
    sink_batch_seconds: float = 1.0
    # Longest one MySQL transaction of a sink may take before it is abandoned and retried.
    mysql_write_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not self.data_dir:
            object.__setattr__(self, "data_dir", f"./data/{self.app_id}")
        self.validate()

    @property
    def discord_enabled(self) -> bool:
        return self.enable_discord and bool(self.discord_webhook_url)

    def topic_name(self, short: str) -> str:
        return f"{self.app_id}.{short}"

    @property
    def bootstrap_servers(self) -> str:
        """``KAFKA_BROKER`` as aiokafka takes it: ``host:port,host:port`` (no ``kafka://``)."""
        return bootstrap_servers(self.kafka_broker)

    def validate(self) -> None:
        if not self.kafka_broker:
            raise SettingsError("KAFKA_BROKER must name at least one broker")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.app_id):
            raise SettingsError(
                f"APP_ID {self.app_id!r} may only hold letters, digits, '.', '_', '-'"
            )
        if not self.steam_countries:
            raise SettingsError("STEAM_COUNTRIES must list at least one country code")
        for cc in self.steam_countries:
            if not COUNTRY_RE.match(cc):
                raise SettingsError(f"STEAM_COUNTRIES: {cc!r} is not a two-letter country code")
        if not 1 <= self.steam_batch_size <= 1000:
            raise SettingsError("STEAM_BATCH_SIZE must be between 1 and 1000")
        if self.steam_max_requests_per_minute <= 0:
            raise SettingsError("STEAM_MAX_REQUESTS_PER_MINUTE must be positive")
        if self.steam_getitems_max_requests_per_minute < 0:
            raise SettingsError("STEAM_GETITEMS_MAX_REQUESTS_PER_MINUTE must be 0 (off) or more")
        if self.steam_backoff_seconds <= 0:
            raise SettingsError("STEAM_BACKOFF_SECONDS must be positive")
        if self.recrawl_interval_seconds <= 0:
            raise SettingsError("RECRAWL_INTERVAL_SECONDS must be positive")
        if self.max_failures < 1:
            raise SettingsError("MAX_FAILURES must be at least 1")
        if urlsplit(self.table_store).scheme not in TABLE_STORES:
            raise SettingsError(
                f"TABLE_STORE must be one of {', '.join(f'{n}://' for n in TABLE_STORES)}, "
                f"not {self.table_store!r}"
            )
        if self.topic_partitions < 1:
            raise SettingsError("TOPIC_PARTITIONS must be at least 1")
        if not 1 <= self.web_port <= 65535:
            raise SettingsError("WEB_PORT must be a TCP port")
        _validate_group_settings(self)
        if not 1 <= self.sink_batch_size <= 10000:
            raise SettingsError("SINK_BATCH_SIZE must be between 1 and 10000")
        if self.sink_batch_seconds <= 0 or self.mysql_write_timeout_seconds <= 0:
            raise SettingsError(
                "SINK_BATCH_SECONDS and MYSQL_WRITE_TIMEOUT_SECONDS must be positive"
            )
        for name in ("steam_store_url", "steam_api_url", "steamspy_url"):
            url = getattr(self, name)
            if urlsplit(url).scheme not in ("http", "https"):
                raise SettingsError(f"{name.upper()} must be an http(s) URL, not {url!r}")
        _validate_discord_settings(self)
        _validate_crawler_settings(self)
        hook = self.discord_webhook_url.get()
        if hook and urlsplit(hook).scheme not in ("http", "https"):
            # Never echo the value: it holds the webhook token.
            raise SettingsError("DISCORD_WEBHOOK_URL must be an http(s) URL")


def _validate_group_settings(s: Settings) -> None:
    from steamprice.local_state import valid_instance_id  # lazy, like the Discord checks

    if s.group_instance_id and not valid_instance_id(s.group_instance_id):
        raise SettingsError(
            "GROUP_INSTANCE_ID may only hold letters, digits, '.', '_', '-' (at most 249)"
        )
    if s.broker_session_timeout < 6:
        # The broker refuses less (group.min.session.timeout.ms).
        raise SettingsError("BROKER_SESSION_TIMEOUT must be at least 6 seconds")
    if not 0 <= s.fetch_wait_ms <= 10_000:
        # More would hold fetches past the point where a stuck one is noticed (and crawls).
        raise SettingsError("FETCH_WAIT_MS must be between 0 and 10000")
    if s.fetch_min_bytes < 1:
        raise SettingsError("FETCH_MIN_BYTES must be at least 1")


def _validate_discord_settings(s: Settings) -> None:
    if not 0 <= s.discord_min_discount <= 100:
        raise SettingsError("DISCORD_MIN_DISCOUNT must be a percentage between 0 and 100")
    if s.discord_kinds:
        # Lazy, and only when there are kinds to check: pricing imports Faust's models, which
        # the quick ``steamprice seed`` (steamprice.seeding) does without.
        from steamprice.pricing import KINDS
    for kind in s.discord_kinds:
        if kind not in KINDS:
            raise SettingsError(
                f"DISCORD_KINDS: {kind!r} is not a change kind; known: {', '.join(KINDS)}"
            )
    for cc in s.discord_regions:
        if not COUNTRY_RE.match(cc):
            raise SettingsError(f"DISCORD_REGIONS: {cc!r} is not a two-letter country code")
    for app_id in s.discord_watchlist:
        if app_id <= 0:
            raise SettingsError(f"DISCORD_WATCHLIST: {app_id} is not an app id")
    if s.discord_end_date_wait_seconds < 0:
        raise SettingsError("DISCORD_END_DATE_WAIT_SECONDS must be 0 (never wait) or more")
    if s.discord_digest_after_seconds < 0:
        raise SettingsError("DISCORD_DIGEST_AFTER_SECONDS must be 0 (never) or more")
    if s.discord_backlog_alert_seconds <= 0:
        raise SettingsError("DISCORD_BACKLOG_ALERT_SECONDS must be positive")
    if not 0 <= s.discord_rule_metrics_max <= 10000:
        raise SettingsError("DISCORD_RULE_METRICS_MAX must be between 0 and 10000")
    if s.discord_digest_threshold < 0:
        raise SettingsError("DISCORD_DIGEST_THRESHOLD must be 0 (never) or a number of apps")
    if not 1 <= s.discord_channel_messages <= 1000:
        raise SettingsError("DISCORD_CHANNEL_MESSAGES must be between 1 and 1000")
    for name in (
        "discord_channel_window_seconds",
        "discord_max_retry_wait_seconds",
        "discord_ban_pause_seconds",
        "discord_request_timeout_seconds",
    ):
        if not getattr(s, name) > 0:
            raise SettingsError(f"{name.upper()} must be positive")


def _validate_crawler_settings(s: Settings) -> None:
    from steamprice.steam import APP_TYPES  # lazy, like the Discord checks

    for name in (
        "steam_ban_pause_seconds",
        "steam_retry_base_seconds",
        "failed_retry_base_seconds",
        "steam_request_timeout_seconds",
        "steam_batch_wait_seconds",
        "schedule_tick_seconds",
    ):
        if not getattr(s, name) > 0:
            raise SettingsError(f"{name.upper()} must be positive")
    if s.seed_dedupe_seconds < 0:
        raise SettingsError("SEED_DEDUPE_SECONDS must be 0 or more")
    if s.discovery_interval_seconds < 0:
        raise SettingsError("DISCOVERY_INTERVAL_SECONDS must be 0 (off) or more")
    if not s.steam_app_types:
        raise SettingsError("STEAM_APP_TYPES must name at least one app type")
    for app_type in s.steam_app_types:
        if app_type not in APP_TYPES:
            raise SettingsError(
                f"STEAM_APP_TYPES: {app_type!r} is not one of {', '.join(APP_TYPES)}"
            )


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"not a boolean: {value!r}")


def load_settings(search_path: str | None = None, **overrides: Any) -> Settings:
    """Build settings from the environment and an optional ``.env`` file (env wins)."""
    config = AutoConfig(search_path=search_path or ".")
    d = Settings()

    def get(name: str, default: Any, cast: Any = str) -> Any:
        try:
            return config(name, default=default, cast=cast)
        except (ValueError, UndefinedValueError) as exc:
            raise SettingsError(f"{name}: {exc}") from None

    values: dict[str, Any] = {
        "kafka_broker": get("KAFKA_BROKER", d.kafka_broker),
        "app_id": get("APP_ID", d.app_id),
        "topic_partitions": get("TOPIC_PARTITIONS", d.topic_partitions, int),
        "data_dir": get("DATA_DIR", ""),  # empty: per APP_ID
        "group_instance_id": get("GROUP_INSTANCE_ID", ""),
        "broker_session_timeout": get("BROKER_SESSION_TIMEOUT", d.broker_session_timeout, float),
        "table_store": get("TABLE_STORE", d.table_store),
        "allow_untested_faust": get("ALLOW_UNTESTED_FAUST", d.allow_untested_faust, _bool),
        "web_port": get("WEB_PORT", d.web_port, int),
        "web_host": get("WEB_HOST", d.web_host),
        "enable_metrics": get("ENABLE_METRICS", d.enable_metrics, _bool),
        "mysql_host": get("MYSQL_HOST", d.mysql_host),
        "mysql_port": get("MYSQL_PORT", d.mysql_port, int),
        "mysql_user": get("MYSQL_USER", d.mysql_user),
        "mysql_password": Secret(get("MYSQL_PASSWORD", "")),
        "mysql_db": get("MYSQL_DB", d.mysql_db),
        "steam_store_url": get("STEAM_STORE_URL", d.steam_store_url).rstrip("/"),
        "steam_api_url": get("STEAM_API_URL", d.steam_api_url).rstrip("/"),
        "steam_api_key": Secret(get("STEAM_API_KEY", "")),
        "steamspy_url": get("STEAMSPY_URL", d.steamspy_url),
        "steam_countries": tuple(
            c.strip().lower() for c in get("STEAM_COUNTRIES", "us", Csv()) if c.strip()
        ),
        "steam_max_requests_per_minute": get(
            "STEAM_MAX_REQUESTS_PER_MINUTE", d.steam_max_requests_per_minute, float
        ),
        "steam_getitems_max_requests_per_minute": get(
            "STEAM_GETITEMS_MAX_REQUESTS_PER_MINUTE",
            d.steam_getitems_max_requests_per_minute,
            float,
        ),
        "steam_batch_size": get("STEAM_BATCH_SIZE", d.steam_batch_size, int),
        "steam_backoff_seconds": get("STEAM_BACKOFF_SECONDS", d.steam_backoff_seconds, float),
        "steam_batch_wait_seconds": get(
            "STEAM_BATCH_WAIT_SECONDS", d.steam_batch_wait_seconds, float
        ),
        "steam_request_timeout_seconds": get(
            "STEAM_REQUEST_TIMEOUT_SECONDS", d.steam_request_timeout_seconds, float
        ),
        "recrawl_interval_seconds": get(
            "RECRAWL_INTERVAL_SECONDS", d.recrawl_interval_seconds, float
        ),
        "schedule_tick_seconds": get("SCHEDULE_TICK_SECONDS", d.schedule_tick_seconds, float),
        "seed_dedupe_seconds": get("SEED_DEDUPE_SECONDS", d.seed_dedupe_seconds, float),
        "max_failures": get("MAX_FAILURES", d.max_failures, int),
        "steam_ban_pause_seconds": get("STEAM_BAN_PAUSE_SECONDS", d.steam_ban_pause_seconds, float),
        "steam_retry_base_seconds": get(
            "STEAM_RETRY_BASE_SECONDS", d.steam_retry_base_seconds, float
        ),
        "failed_retry_base_seconds": get(
            "FAILED_RETRY_BASE_SECONDS", d.failed_retry_base_seconds, float
        ),
        "steam_app_types": tuple(
            t.strip().lower() for t in get("STEAM_APP_TYPES", "game", Csv()) if t.strip()
        ),
        "discovery_interval_seconds": get(
            "DISCOVERY_INTERVAL_SECONDS", d.discovery_interval_seconds, float
        ),
        "discovery_track_new_apps": get(
            "DISCOVERY_TRACK_NEW_APPS", d.discovery_track_new_apps, _bool
        ),
        "enable_steamspy": get("ENABLE_STEAMSPY", d.enable_steamspy, _bool),
        "discord_webhook_url": Secret(get("DISCORD_WEBHOOK_URL", "")),
        "enable_discord": get("ENABLE_DISCORD", d.enable_discord, _bool),
        "discord_min_discount": get("DISCORD_MIN_DISCOUNT", d.discord_min_discount, int),
        "discord_kinds": tuple(
            k.strip().lower() for k in get("DISCORD_KINDS", "", Csv()) if k.strip()
        ),
        "discord_regions": tuple(
            c.strip().lower() for c in get("DISCORD_REGIONS", "", Csv()) if c.strip()
        ),
        "discord_watchlist": tuple(get("DISCORD_WATCHLIST", "", Csv(cast=int, post_process=tuple))),
        "discord_only_historical_lows": get(
            "DISCORD_ONLY_HISTORICAL_LOWS", d.discord_only_historical_lows, _bool
        ),
        "discord_end_date_wait_seconds": get(
            "DISCORD_END_DATE_WAIT_SECONDS", d.discord_end_date_wait_seconds, float
        ),
        "discord_digest_threshold": get(
            "DISCORD_DIGEST_THRESHOLD", d.discord_digest_threshold, int
        ),
        "discord_digest_after_seconds": get(
            "DISCORD_DIGEST_AFTER_SECONDS", d.discord_digest_after_seconds, float
        ),
        "discord_backlog_alert_seconds": get(
            "DISCORD_BACKLOG_ALERT_SECONDS", d.discord_backlog_alert_seconds, float
        ),
        "discord_rule_metrics_max": get(
            "DISCORD_RULE_METRICS_MAX", d.discord_rule_metrics_max, int
        ),
        "discord_channel_messages": get(
            "DISCORD_CHANNEL_MESSAGES", d.discord_channel_messages, int
        ),
        "discord_channel_window_seconds": get(
            "DISCORD_CHANNEL_WINDOW_SECONDS", d.discord_channel_window_seconds, float
        ),
        "discord_max_retry_wait_seconds": get(
            "DISCORD_MAX_RETRY_WAIT_SECONDS", d.discord_max_retry_wait_seconds, float
        ),
        "discord_ban_pause_seconds": get(
            "DISCORD_BAN_PAUSE_SECONDS", d.discord_ban_pause_seconds, float
        ),
        "discord_request_timeout_seconds": get(
            "DISCORD_REQUEST_TIMEOUT_SECONDS", d.discord_request_timeout_seconds, float
        ),
        "discord_resend_uncertain": get(
            "DISCORD_RESEND_UNCERTAIN", d.discord_resend_uncertain, _bool
        ),
        "producer_linger_ms": get("PRODUCER_LINGER_MS", d.producer_linger_ms, int),
        "fetch_wait_ms": get("FETCH_WAIT_MS", d.fetch_wait_ms, int),
        "fetch_min_bytes": get("FETCH_MIN_BYTES", d.fetch_min_bytes, int),
        "sink_batch_size": get("SINK_BATCH_SIZE", d.sink_batch_size, int),
        "sink_batch_seconds": get("SINK_BATCH_SECONDS", d.sink_batch_seconds, float),
        "mysql_write_timeout_seconds": get(
            "MYSQL_WRITE_TIMEOUT_SECONDS", d.mysql_write_timeout_seconds, float
        ),
    }
    values.update(overrides)
    return Settings(**values)
