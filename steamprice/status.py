"""``steamprice status``: what the pipeline is doing, from Kafka, MySQL and a worker's /metrics.

Each source is read independently and with a deadline: one that cannot be read is reported as
a problem (and makes the exit status 1) while the others are still shown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import aiomysql
import pymysql
from faust.cli import AppCommand, option

from steamprice.app import app, settings
from steamprice.database import connect_kwargs, describe_error
from steamprice.report import (
    RegionDiscounts,
    RegionRows,
    RuleRows,
    TrackedApp,
    WorkerFacts,
    alert_rules_report,
    count_apps,
    decode_app_state,
    discord_state,
    discount_ends_report,
    iso_utc,
    last_success_report,
    parse_worker_metrics,
    render,
    sweep_progress,
)
from steamprice.tables import app_state_table

T = TypeVar("T")

REGIONS = "SELECT cc, COUNT(*) FROM price_current GROUP BY cc"
# An app was swept in a region when a batch that held it was checked there since the cutoff
# (an unchanged price is not written to price_current again: see sql/011_price_checks.sql).
CHECKED = (
    "SELECT c.cc, COUNT(DISTINCT j.app_id), MAX(c.checked_at) FROM price_checks c,"
    " JSON_TABLE(c.app_ids, '$[*]' COLUMNS (app_id INT UNSIGNED PATH '$')) AS j"
    " WHERE c.checked_at >= %s GROUP BY c.cc"
)
# Prices with a real cut, and how many have an announced end (sql/020, sql/060).
DISCOUNTS = (
    "SELECT cc, COUNT(*), COALESCE(SUM(discount_ends_at IS NOT NULL), 0) FROM price_current"
    " WHERE status = 'priced' AND discount_percent > 0 AND final_price < initial_price"
    " GROUP BY cc"
)
ASKING = (
    "SELECT cc, COUNT(*), COALESCE(SUM(attempts > 0), 0) FROM discount_ends WHERE pending = 1"
    " GROUP BY cc"
)
DELIVERIES = "SELECT status, COUNT(*), MAX(delivered_at) FROM discord_deliveries GROUP BY status"
DISABLED_WEBHOOKS = (
    "SELECT disabled_reason, disabled_at FROM discord_webhooks ORDER BY disabled_at DESC LIMIT 5"
)
RULE_DELIVERIES = (
    "SELECT rule_name, status, COUNT(*),"
    " TIMESTAMPDIFF(MICROSECOND, MIN(queued_at), UTC_TIMESTAMP(6)) / 1e6"
    " FROM discord_deliveries GROUP BY rule_name, status"
)
ALERT_RULES = (
    "SELECT r.name, r.channel_id, r.webhook_hint, w.disabled_reason FROM alert_rules r"
    " LEFT JOIN discord_webhooks w ON w.webhook_key = r.webhook_key ORDER BY r.name"
)
NO_SUCH_TABLE = 1146
UNKNOWN_COLUMN = 1054


def default_worker_url() -> str:
    """This machine's worker: WEB_PORT on loopback unless WEB_HOST names one address."""
    host = settings.web_host if settings.web_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{settings.web_port}"


async def read_app_states() -> list[TrackedApp]:
    """The latest value of every key of the app-state table, from its changelog topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        topic = app_state_table.changelog_topic.get_topic_name()
        # consumer.partitions_for_topic() only knows topics the client happened to load; ask.
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            return []  # no worker has written the table yet: nothing is tracked
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        latest: dict[bytes, bytes | None] = {}
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            # All partitions at once; values are decoded only once compacted to the latest.
            for records in (await consumer.getmany(*remaining, timeout_ms=1000)).values():
                for r in records:
                    if r.key is not None:
                        latest[r.key] = r.value
            remaining = {tp for tp in remaining if await consumer.position(tp) < end[tp]}
        return [decode_app_state(v) for v in latest.values() if v]  # None: a deleted key
    finally:
        await consumer.stop()


async def read_mysql(interval: timedelta) -> dict[str, Any]:
    """``price_current`` per region and the Discord ledger, in one short connection."""
    conn = await aiomysql.connect(**connect_kwargs(settings), autocommit=True)
    try:
        async with conn.cursor() as cur:
            cutoff = datetime.now(UTC).replace(tzinfo=None) - interval
            await cur.execute(REGIONS)
            rows = {str(cc): int(n) for cc, n in await cur.fetchall()}
            checked: dict[str, tuple[int, datetime | None]] = {}
            try:
                await cur.execute(CHECKED, (cutoff,))
                checked = {str(cc): (int(n), last) for cc, n, last in await cur.fetchall()}
            except pymysql.err.ProgrammingError as exc:
                if exc.args[0] != NO_SUCH_TABLE:  # older schema: no checks recorded yet
                    raise
            regions = [
                RegionRows(cc, rows.get(cc, 0), *checked.get(cc, (0, None)))
                for cc in sorted({*rows, *checked})
            ]
            discounts: list[RegionDiscounts] = []
            try:
                await cur.execute(DISCOUNTS)
                on_sale = {str(cc): (int(n), int(k)) for cc, n, k in await cur.fetchall()}
                await cur.execute(ASKING)
                asking = {str(cc): (int(n), int(f)) for cc, n, f in await cur.fetchall()}
                discounts = [
                    RegionDiscounts(cc, *on_sale.get(cc, (0, 0)), *asking.get(cc, (0, 0)))
                    for cc in sorted({*on_sale, *asking})
                ]
            except pymysql.err.OperationalError as exc:
                if exc.args[0] != UNKNOWN_COLUMN:  # older schema: no end dates yet
                    raise
            except pymysql.err.ProgrammingError as exc:
                if exc.args[0] != NO_SUCH_TABLE:
                    raise
            await cur.execute(DELIVERIES)
            deliveries = {str(s): (int(n), last) for s, n, last in await cur.fetchall()}
            disabled: list[dict[str, Any]] = []
            try:
                await cur.execute(DISABLED_WEBHOOKS)
                disabled = [
                    {"reason": str(reason), "at": iso_utc(at)}
                    for reason, at in await cur.fetchall()
                ]
            except pymysql.err.ProgrammingError as exc:
                if exc.args[0] != NO_SUCH_TABLE:  # older schema: no such ledger yet
                    raise
            rules: list[dict[str, Any]] | None = None
            channels: list[dict[str, Any]] | None = None
            try:
                await cur.execute(RULE_DELIVERIES)
                per_rule = {
                    (str(r), str(st)): (int(n), float(age) if age is not None else None)
                    for r, st, n, age in await cur.fetchall()
                }
                await cur.execute(ALERT_RULES)
                mirror = [
                    RuleRows(str(n), c, str(hint), reason)
                    for n, c, hint, reason in await cur.fetchall()
                ]
                rules, channels = alert_rules_report(mirror, per_rule)
            except (pymysql.err.ProgrammingError, pymysql.err.OperationalError) as exc:
                if exc.args[0] not in (NO_SUCH_TABLE, UNKNOWN_COLUMN):  # schema before rules
                    raise
        return {
            "regions": regions,
            "discounts": discounts,
            "deliveries": deliveries,
            "disabled_webhooks": disabled,
            "rules": rules,
            "channels": channels,
        }
    finally:
        conn.close()


async def read_worker(url: str, seconds: float) -> tuple[dict[str, Any], WorkerFacts]:
    """The worker's /health (a 503 still has a body) and the facts of its /metrics."""
    client_timeout = aiohttp.ClientTimeout(total=seconds)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        async with session.get(f"{url}/health") as resp:
            health = dict(await resp.json(content_type=None))
        async with session.get(f"{url}/metrics") as resp:
            resp.raise_for_status()
            facts = parse_worker_metrics(await resp.text())
    return health, facts


async def _attempt(what: str, work: Awaitable[T], seconds: float, problems: list[str]) -> T | None:
    try:
        return await asyncio.wait_for(work, seconds)
    except TimeoutError:
        problems.append(f"{what}: no answer within {seconds:.0f} s")
    except Exception as exc:
        problems.append(f"{what}: {describe_error(exc)}")
    return None


async def build_report(worker_url: str | None, seconds: float) -> dict[str, Any]:
    """Gather every source concurrently and assemble the JSON-able report."""
    now = datetime.now(UTC)
    interval = timedelta(seconds=settings.recrawl_interval_seconds)
    problems: list[str] = []

    async def no_worker() -> None:
        return None

    states, db, worker = await asyncio.gather(
        _attempt("kafka", read_app_states(), seconds, problems),
        _attempt("mysql", read_mysql(interval), seconds, problems),
        _attempt("worker", read_worker(worker_url, seconds), seconds, problems)
        if worker_url
        else no_worker(),
    )
    counts = count_apps(states, now) if states is not None else None
    health, facts = worker if worker is not None else ({}, None)

    active = counts.tracked - counts.failed if counts is not None else None
    deliveries = db["deliveries"] if db is not None else None
    sent_at = [last for status, (_, last) in (deliveries or {}).items() if status == "sent"]
    return {
        "app_id": settings.app_id,
        "generated_at": now.isoformat(),
        "recrawl_interval_seconds": settings.recrawl_interval_seconds,
        "apps": asdict(counts) if counts is not None else None,
        "regions": sweep_progress(settings.steam_countries, db["regions"], active)
        if db is not None
        else None,
        "discounts": discount_ends_report(settings.steam_countries, db["discounts"])
        if db is not None
        else None,
        "last_success": last_success_report(facts.last_success, now) if facts else None,
        "worker": {
            "url": worker_url or None,
            "reachable": facts is not None,
            "consuming": health.get("consuming"),
            "assigned_partitions": health.get("assigned_partitions"),
            "consumer_lag": facts.consumer_lag if facts else None,
        },
        "discord": {
            "configured": settings.discord_enabled,
            "state": discord_state(
                settings.discord_enabled,
                facts.webhook_enabled if facts else None,
                health.get("discord"),
            ),
            "deliveries": {s: n for s, (n, _) in deliveries.items()}
            if deliveries is not None
            else None,
            "last_delivered_at": iso_utc(sent_at[0]) if sent_at else None,
            "disabled_webhooks": db["disabled_webhooks"] if db is not None else None,
            "rules": db["rules"] if db is not None else None,
            "channels": db["channels"] if db is not None else None,
        },
        "problems": problems,
    }


@app.command(
    option("--json", "as_json", is_flag=True, default=False, help="Print JSON (for scripts)."),
    option(
        "--worker-url",
        type=str,
        default=None,
        help="A worker's web server for /metrics and /health (default: this machine's "
        "WEB_PORT; '' to skip).",
    ),
    option(
        "--timeout", "seconds", type=float, default=20.0, help="Seconds allowed for each source."
    ),
)
async def status(self: AppCommand, as_json: bool, worker_url: str | None, seconds: float) -> None:
    """Tracked, due and failed apps, sweep progress, last successes, Discord (exit 1: partial)."""
    url = default_worker_url() if worker_url is None else worker_url.rstrip("/")
    report = await build_report(url or None, seconds)
    self.say(
        json.dumps(report, indent=2, sort_keys=True) if as_json or self.json else render(report)
    )
    if report["problems"]:
        raise SystemExit(1)
