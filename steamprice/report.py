"""Pure parts of observability: consumer lag, the ``steamprice status`` report and its text.

Nothing here talks to Kafka, MySQL or HTTP: the worker's collector (``web.py``) and the status
command (``status.py``) gather the facts and hand them over, so the arithmetic and the wording
are tested without a broker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

# A topic partition: Faust's ``TP`` and aiokafka's ``TopicPartition`` are both such tuples.
P = TypeVar("P", bound=tuple[str, int])

# At most this many failed app ids are listed (the count is always exact).
MAX_LISTED_FAILED = 20


def short_topic(topic: str, app_id: str) -> str | None:
    """``<APP_ID>.prices-raw`` -> ``prices-raw``; None for other topics (changelogs, foreign).

    Keeps the lag metric's ``topic`` label bounded to the pipeline's own few topics.
    """
    prefix = f"{app_id}."
    return topic[len(prefix) :] if topic.startswith(prefix) else None


def consumer_lag(
    app_id: str,
    end_offsets: Mapping[P, int],
    committed: Mapping[P, int | None],
    earliest: Mapping[P, int],
) -> dict[str, int]:
    """Messages not yet processed per topic: end offset minus committed offset, summed.

    A partition with no committed offset yet is behind by everything still in it (from its
    earliest offset). Changelog topics are left out: Faust keeps their progress in the table
    store, not in committed offsets, so ``end - committed`` would mean nothing there.
    """
    lag: dict[str, int] = {}
    for tp, end in end_offsets.items():
        topic = short_topic(tp[0], app_id)
        if topic is None:
            continue
        done = committed.get(tp)
        if done is None:
            done = earliest.get(tp, 0)
        lag[topic] = lag.get(topic, 0) + max(0, end - done)
    return lag


@dataclass(frozen=True, slots=True)
class TrackedApp:
    """The fields of an ``AppState`` (models.py) that the status report counts."""

    app_id: int
    next_due: datetime
    failed: bool = False
    pending: bool = False
    # When a re-check asked for by a seed inside the seed dedupe window is due.
    recheck_at: datetime | None = None


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def decode_app_state(value: bytes) -> TrackedApp:
    """One app-state changelog value (Faust's JSON of ``AppState``), decoded directly.

    About three times faster than ``AppState.loads``, which matters on a 200k-app catalog.
    """
    data = json.loads(value)
    recheck = data.get("recheck_at")
    return TrackedApp(
        int(data["app_id"]),
        _aware(data["next_due"]),
        bool(data.get("failed", False)),
        bool(data.get("pending", False)),
        _aware(recheck) if recheck else None,
    )


@dataclass(frozen=True)
class AppCounts:
    tracked: int
    due: int
    in_flight: int
    failed: int
    failed_app_ids: list[int]
    # Re-checks owed to seeds that came inside the seed dedupe window, and the next one's time.
    rechecks: int = 0
    next_recheck_at: str | None = None


def count_apps(states: Iterable[TrackedApp], now: datetime) -> AppCounts:
    """Tracked; due (time has come, not yet sent to the crawler); in flight; failed; and the
    re-checks that seeds inside the dedupe window are owed (pending re-checks)."""
    tracked = due = in_flight = rechecks = 0
    failed: list[int] = []
    next_recheck: datetime | None = None
    for state in states:
        tracked += 1
        if state.failed:
            failed.append(state.app_id)
            continue
        if state.pending:
            in_flight += 1
        elif state.next_due <= now:
            due += 1
        if state.recheck_at is not None:
            rechecks += 1
            next_recheck = min(next_recheck or state.recheck_at, state.recheck_at)
    failed.sort()
    return AppCounts(
        tracked,
        due,
        in_flight,
        len(failed),
        failed[:MAX_LISTED_FAILED],
        rechecks,
        iso_utc(next_recheck),
    )


@dataclass(frozen=True)
class RegionRows:
    """One region: rows of ``price_current``, apps checked within the recrawl interval
    (``price_checks``) and the newest check."""

    cc: str
    rows: int
    fresh: int
    last_checked: datetime | None


def sweep_progress(
    regions: Sequence[str], rows: Sequence[RegionRows], active_apps: int | None
) -> list[dict[str, Any]]:
    """Per region: how much of the current sweep is done.

    An app counts as swept in a region when its price there was checked within the recrawl
    interval (whether or not it changed); ``progress`` is that over the apps being crawled
    (tracked and not failed), capped at 1 (a failed app may still have a fresh check).
    Configured regions come first, then any region the table still holds from an earlier
    configuration.
    """
    by_cc = {r.cc: r for r in rows}
    order = list(dict.fromkeys([*regions, *sorted(by_cc)]))
    out = []
    for cc in order:
        r = by_cc.get(cc, RegionRows(cc, 0, 0, None))
        progress = None
        if active_apps:
            progress = round(min(1.0, r.fresh / active_apps), 4)
        elif active_apps == 0:
            progress = 1.0
        out.append(
            {
                "cc": cc,
                "configured": cc in regions,
                "rows": r.rows,
                "swept": r.fresh,
                "progress": progress,
                "last_checked_at": iso_utc(r.last_checked),
            }
        )
    return out


@dataclass(frozen=True)
class RegionDiscounts:
    """One region: prices on sale in ``price_current`` (a real cut), how many of them with an
    announced end, and the end-date questions waiting in ``discount_ends``."""

    cc: str
    discounted: int
    known_end: int
    asking: int = 0
    failing: int = 0


def discount_ends_report(
    regions: Sequence[str], rows: Sequence[RegionDiscounts]
) -> list[dict[str, Any]]:
    """Per region: discounts with and without a known end, and questions still waiting."""
    by_cc = {r.cc: r for r in rows}
    out = []
    for cc in dict.fromkeys([*regions, *sorted(by_cc)]):
        r = by_cc.get(cc, RegionDiscounts(cc, 0, 0))
        out.append(
            {
                "cc": cc,
                "discounted": r.discounted,
                "known_end": r.known_end,
                "unknown_end": r.discounted - r.known_end,
                "asking": r.asking,
                "asking_after_failure": r.failing,
            }
        )
    return out


@dataclass
class WorkerFacts:
    """What a worker's ``/metrics`` says that the status report shows."""

    last_success: dict[str, float] = field(default_factory=dict)
    consumer_lag: dict[str, float] = field(default_factory=dict)
    webhook_enabled: float | None = None
    webhook_configured: float | None = None
    pipeline_status: float | None = None


def parse_worker_metrics(text: str) -> WorkerFacts:
    """Pick the status-relevant samples out of a Prometheus text exposition."""
    facts = WorkerFacts()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if math.isnan(value):
                continue
            if name == "steam_last_success_timestamp_seconds" and "endpoint" in labels:
                facts.last_success[labels["endpoint"]] = value
            elif name == "steam_consumer_lag_messages" and "topic" in labels:
                facts.consumer_lag[labels["topic"]] = value
            elif name == "steam_discord_webhook_enabled":
                facts.webhook_enabled = value
            elif name == "steam_discord_webhook_configured":
                facts.webhook_configured = value
            elif name == "steam_pipeline_status" and labels.get("pipeline") == "worker":
                facts.pipeline_status = value
    return facts


def last_success_report(stamps: Mapping[str, float], now: datetime) -> dict[str, dict[str, Any]]:
    return {
        endpoint: {
            "at": iso_utc(datetime.fromtimestamp(ts, UTC)),
            "age_seconds": round(max(0.0, now.timestamp() - ts), 1),
        }
        for endpoint, ts in sorted(stamps.items())
        if ts > 0
    }


def discord_state(
    configured: bool, webhook_enabled: float | None, health_discord: str | None
) -> str:
    """One word (plus a reason) for the webhook: off, on, disabled: ..., or unknown."""
    if health_discord and health_discord.startswith("disabled"):
        return health_discord
    if not configured:
        return "off"
    if webhook_enabled is None:
        return "unknown (worker not reachable)"
    return "on" if webhook_enabled >= 1 else "disabled"


@dataclass(frozen=True)
class RuleRows:
    """One alert rule as ``alert_rules`` mirrors it (channel NULL until learned)."""

    name: str
    channel: str | None
    webhook: str
    disabled: str | None


def alert_rules_report(
    rules: Sequence[RuleRows], deliveries: Mapping[tuple[str, str], tuple[int, float | None]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per rule: ledger rows per status, its channel, whether it is disabled; per channel: the
    backlog (pending rows of its rules) and the age of its oldest one.

    ``deliveries`` maps (rule, status) to (rows, age of the oldest row in seconds). Rules that
    only the ledger still knows (removed since) are listed too, without a channel.
    """
    known = {r.name: r for r in rules}
    names = sorted(set(known) | {rule for rule, _ in deliveries})
    out_rules: list[dict[str, Any]] = []
    channels: dict[str, dict[str, Any]] = {}
    for name in names:
        row = known.get(name)
        counts = {s: n for (r, s), (n, _) in deliveries.items() if r == name}
        pending, oldest = deliveries.get((name, "pending"), (0, None))
        channel = (row.channel if row else None) or (f"webhook of {name}" if row else None)
        out_rules.append(
            {
                "name": name,
                "channel": channel,
                "webhook": row.webhook if row else None,
                "disabled": row.disabled if row else None,
                "removed": row is None,
                "deliveries": counts,
                "pending": pending,
                "oldest_pending_seconds": oldest if pending else None,
            }
        )
        if channel is None:
            continue
        c = channels.setdefault(
            channel, {"channel": channel, "rules": [], "backlog": 0, "oldest_seconds": None}
        )
        c["rules"].append(name)
        c["backlog"] += pending
        if pending and oldest is not None:
            c["oldest_seconds"] = max(c["oldest_seconds"] or 0.0, oldest)
    return out_rules, sorted(channels.values(), key=lambda c: str(c["channel"]))


# --- text --------------------------------------------------------------------------------------


def human_age(seconds: float | None) -> str:
    """``42 s``, ``3 min``, ``5 h 02 min``, ``2 d 03 h``."""
    if seconds is None:
        return "never"
    s = int(max(0.0, seconds))
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


def _in(seconds: float) -> str:
    return "now" if seconds <= 0 else f"in {human_age(seconds)}"


def _age_of(iso: str | None, now: datetime) -> str:
    if iso is None:
        return "never"
    return human_age(now.timestamp() - datetime.fromisoformat(iso).timestamp()) + " ago"


def render(report: Mapping[str, Any]) -> str:
    """The status report as text for a terminal (``--json`` prints the mapping itself)."""
    now = datetime.fromisoformat(report["generated_at"])
    lines = [f"steamprice status of {report['app_id']} at {now:%Y-%m-%d %H:%M:%S} UTC", ""]

    apps = report.get("apps")
    if apps is None:
        lines.append("Apps          unknown (Kafka not readable)")
    else:
        ids = ""
        if apps["failed_app_ids"]:
            more = ", ..." if apps["failed"] > len(apps["failed_app_ids"]) else ""
            ids = " (" + ", ".join(str(a) for a in apps["failed_app_ids"]) + more + ")"
        lines.append(
            f"Apps          {apps['tracked']:,} tracked, {apps['due']:,} due now,"
            f" {apps['in_flight']:,} being priced, {apps['failed']:,} failed{ids}"
        )
        if apps.get("rechecks"):
            when = datetime.fromisoformat(apps["next_recheck_at"]).timestamp() - now.timestamp()
            lines.append(
                f"Re-checks     {apps['rechecks']:,} pending (seeded again within"
                f" SEED_DEDUPE_SECONDS), the next {_in(when)}"
            )

    interval = human_age(report["recrawl_interval_seconds"])
    lines.append(f"Sweep         share of apps priced within the recrawl interval ({interval})")
    regions = report.get("regions")
    if regions is None:
        lines.append("              unknown (MySQL not readable)")
    else:
        for r in regions:
            share = "   n/a" if r["progress"] is None else f"{r['progress'] * 100:5.1f}%"
            note = "" if r["configured"] else "  (not in STEAM_COUNTRIES)"
            lines.append(
                f"  {r['cc']:<4} {share}  {r['swept']:>9,} swept  {r['rows']:>9,} rows"
                f"  last check {_age_of(r['last_checked_at'], now)}{note}"
            )

    lines.append("Discounts     on sale, with and without an end date from GetItems")
    discounts = report.get("discounts")
    if discounts is None:
        lines.append("              unknown (MySQL not readable)")
    else:
        for d in discounts:
            waiting = f"; {d['asking']:,} being asked" if d["asking"] else ""
            if d["asking_after_failure"]:
                waiting += f" ({d['asking_after_failure']:,} after a failed try)"
            lines.append(
                f"  {d['cc']:<4} {d['discounted']:>9,} on sale  {d['known_end']:>9,} end known"
                f"  {d['unknown_end']:>9,} unknown{waiting}"
            )

    lines.append("Last success  per endpoint, from the worker's /metrics")
    success = report.get("last_success")
    if success is None:
        lines.append("              unknown (worker not reachable)")
    elif not success:
        lines.append("              none since the worker started")
    else:
        for endpoint, s in success.items():
            lines.append(f"  {endpoint:<12} {human_age(s['age_seconds'])} ago ({s['at']})")

    worker = report["worker"]
    if worker["url"] is None:
        lines.append("Worker        not asked (no --worker-url)")
    elif not worker["reachable"]:
        lines.append(f"Worker        {worker['url']}: not reachable")
    else:
        state = "consuming" if worker.get("consuming") else "NOT consuming"
        lag = worker.get("consumer_lag") or {}
        behind = ", ".join(f"{t} {int(n):,}" for t, n in sorted(lag.items()) if n) or "none"
        lines.append(
            f"Worker        {worker['url']}: {state}, "
            f"{worker.get('assigned_partitions', 0)} partitions, lag: {behind}"
        )

    discord = report["discord"]
    lines.append(f"Discord       webhook {discord['state']}")
    deliveries = discord.get("deliveries")
    if deliveries is None:
        lines.append("              deliveries unknown (MySQL not readable)")
    else:
        counts = ", ".join(f"{n:,} {s}" for s, n in sorted(deliveries.items())) or "none yet"
        last = _age_of(discord.get("last_delivered_at"), now)
        lines.append(f"              deliveries: {counts}; last sent {last}")
    for hook in discord.get("disabled_webhooks") or []:
        lines.append(f"              a webhook was disabled at {hook['at']}: {hook['reason']}")
    for rule in discord.get("rules") or []:
        counts = ", ".join(f"{n:,} {s}" for s, n in sorted(rule["deliveries"].items()))
        state = (
            "removed"
            if rule["removed"]
            else (f"DISABLED ({rule['disabled']})" if rule["disabled"] else "on")
        )
        counts = counts or "nothing yet"
        lines.append(f"  rule {rule['name']:<16} {state}, channel {rule['channel']}: {counts}")
    for channel in discord.get("channels") or []:
        oldest = channel["oldest_seconds"]
        age = f", oldest waiting {human_age(oldest)}" if oldest is not None else ""
        lines.append(
            f"  channel {channel['channel']}: {channel['backlog']:,} waiting{age}"
            f" (rules {', '.join(channel['rules'])})"
        )

    problems = report.get("problems") or []
    lines.append("")
    lines.append("Problems      " + ("none" if not problems else problems[0]))
    lines.extend(f"              {p}" for p in problems[1:])
    return "\n".join(lines)


def iso_utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC; a naive datetime is taken as UTC (MySQL DATETIME columns hold UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()
