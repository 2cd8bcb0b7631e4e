"""The delivery ledger's SQL: deliveries, disabled webhooks, rate-limit windows and rules.

``discord_deliveries`` has one row per (change, alert rule): ``pending`` -> ``sending`` ->
``sent`` (or ``rejected``); ``skipped`` by the default rule's filters (or its rule removed);
``uncertain`` when a sender died mid-post. ``alert_rules`` mirrors the rules for dashboards.
``discord_webhooks`` remembers webhooks found deleted or unauthorised. ``discord_rate_limits``
holds, per webhook, per channel and globally, the time before which Discord must not be called
(by the database's clock, so that a sender on another machine reads it right), and
``discord_webhook_channels`` the channel each webhook posts into. Each function runs on a
cursor inside the caller's transaction (``Database.transaction``), so the notifier combines
several in one commit: a message's rows go back to ``pending`` together with the window its
429 opened.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from steamprice.notify.webhook import CHANNEL, GLOBAL, WEBHOOK, Window

# The ``Database.transaction`` label of every ledger write (retries, rejected rows).
LEDGER = "discord_ledger"

PENDING, SENDING, SENT = "pending", "sending", "sent"
SKIPPED, REJECTED, UNCERTAIN = "skipped", "rejected", "uncertain"

# A change already in the ledger (a redelivery) is left as it is: 0 rows affected, no warning.
QUEUE_CHANGE = (
    "INSERT INTO discord_deliveries"
    " (event_id, rule_name, app_id, cc, kind, status, detail, change_json, queued_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE event_id = event_id"
)
# Per rule: waiting changes, distinct apps among them, the oldest one's age in seconds.
BACKLOG = (
    "SELECT rule_name, status, COUNT(*), COUNT(DISTINCT app_id),"
    " TIMESTAMPDIFF(MICROSECOND, MIN(queued_at), UTC_TIMESTAMP(6))"
    " FROM discord_deliveries WHERE status IN ('pending', 'uncertain')"
    " GROUP BY rule_name, status"
)
OLDEST_PENDING = (
    "SELECT event_id, change_json FROM discord_deliveries"
    " WHERE status = 'pending' AND rule_name = %s ORDER BY queued_at, event_id LIMIT %s"
)
SETTLE_IN_FLIGHT = "UPDATE discord_deliveries SET status = %s, detail = %s WHERE status = 'sending'"
RECENT_MESSAGES = (
    "SELECT channel_id, TIMESTAMPDIFF(MICROSECOND, MAX(delivered_at), UTC_TIMESTAMP(6))"
    " FROM discord_deliveries WHERE status = 'sent' AND channel_id IS NOT NULL"
    " AND delivered_at >= UTC_TIMESTAMP(6) - INTERVAL %s MICROSECOND"
    " GROUP BY channel_id, message_id"
)
RETIRE_RULE = (
    "UPDATE discord_deliveries SET status = 'skipped', detail = %s"
    " WHERE status = 'pending' AND rule_name = %s"
)
MIRROR_RULE = (
    "INSERT INTO alert_rules (name, webhook_id, webhook_hint, webhook_key, filters, digest,"
    " source, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE"
    " webhook_id = VALUES(webhook_id), webhook_hint = VALUES(webhook_hint),"
    " channel_id = IF(webhook_key = VALUES(webhook_key), channel_id, NULL),"
    " webhook_key = VALUES(webhook_key), filters = VALUES(filters), digest = VALUES(digest),"
    " source = VALUES(source), updated_at = VALUES(updated_at)"
)
DISABLED_WEBHOOK = (
    "SELECT disabled_reason, disabled_at FROM discord_webhooks WHERE webhook_key = %s"
)
DISABLE_WEBHOOK = (
    "INSERT INTO discord_webhooks (webhook_key, webhook_id, disabled_reason, disabled_at)"
    " VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE"
    " disabled_reason = VALUES(disabled_reason), disabled_at = VALUES(disabled_at)"
)
# A window is only ever lengthened (two answers, two waits: the later end wins).
STORE_WINDOW = (
    "INSERT INTO discord_rate_limits (scope, scope_key, not_before, reason)"
    " VALUES (%s, %s, UTC_TIMESTAMP(6) + INTERVAL %s MICROSECOND, %s) ON DUPLICATE KEY UPDATE"
    " reason = IF(VALUES(not_before) > not_before, VALUES(reason), reason),"
    " not_before = GREATEST(not_before, VALUES(not_before))"
)
OPEN_WINDOWS = (
    "SELECT scope, reason, TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), not_before)"
    " FROM discord_rate_limits WHERE not_before > UTC_TIMESTAMP(6)"
    f" AND ((scope = '{WEBHOOK}' AND scope_key = %s) OR (scope = '{CHANNEL}' AND scope_key = %s)"
    f" OR scope = '{GLOBAL}')"
)
WEBHOOK_CHANNEL = "SELECT channel_id FROM discord_webhook_channels WHERE webhook_id = %s"
STORE_CHANNEL = (
    "INSERT INTO discord_webhook_channels (webhook_id, channel_id) VALUES (%s, %s)"
    " ON DUPLICATE KEY UPDATE channel_id = VALUES(channel_id)"
)


def utcnow() -> datetime:
    """Naive UTC, as the DATETIME(6) columns hold it."""
    return datetime.now(UTC).replace(tzinfo=None)


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


async def queue_rows(cur: Any, rows: Sequence[tuple[Any, ...]]) -> Counter[str]:
    """Insert ledger rows (``QUEUE_CHANGE`` order); how many were new, per status."""
    written: Counter[str] = Counter()
    for status in (PENDING, SKIPPED):
        part = [r for r in rows if r[5] == status]
        if part:
            await cur.executemany(QUEUE_CHANGE, part)
            written[status] += max(int(cur.rowcount), 0)
    return written


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits for one rule: changes, distinct apps, the oldest one's age (seconds)."""

    changes: int = 0
    apps: int = 0
    oldest_seconds: float = 0.0


async def backlog(cur: Any) -> dict[tuple[str, str], Backlog]:
    """:class:`Backlog` per (rule, waiting status) -- ``pending`` and ``uncertain``."""
    await cur.execute(BACKLOG)
    return {
        (str(r), str(s)): Backlog(int(n), int(a), max(float(age or 0), 0.0) / 1e6)
        for r, s, n, a, age in await cur.fetchall()
    }


async def oldest_pending(cur: Any, rule: str, limit: int) -> list[tuple[str, str | None]]:
    """(event_id, change_json) of one rule's oldest pending rows, in queue order."""
    await cur.execute(OLDEST_PENDING, (rule, limit))
    return [(str(a), b) for a, b in await cur.fetchall()]


async def retire_rule(cur: Any, rule: str, detail: str) -> int:
    """Pending rows of a rule that no longer exists become ``skipped``; how many."""
    await cur.execute(RETIRE_RULE, (detail, rule))
    return int(cur.rowcount)


async def mirror_rules(cur: Any, rows: Sequence[tuple[Any, ...]], keep: Sequence[str]) -> None:
    """Make ``alert_rules`` hold these rows (``MIRROR_RULE`` order) and no rule outside ``keep``."""
    if rows:
        await cur.executemany(MIRROR_RULE, rows)
    if keep:
        await cur.execute(f"DELETE FROM alert_rules WHERE name NOT IN ({_marks(len(keep))})", keep)
    else:
        await cur.execute("DELETE FROM alert_rules")


async def set_rule_channel(cur: Any, webhook_key: str, channel_id: str) -> None:
    """Record the channel a webhook posts into on every rule using it."""
    await cur.execute(
        "UPDATE alert_rules SET channel_id = %s WHERE webhook_key = %s", (channel_id, webhook_key)
    )


async def app_names(cur: Any, app_ids: Sequence[int]) -> dict[int, str]:
    """The known names of these apps (from ``apps``)."""
    await cur.execute(
        "SELECT app_id, name FROM apps WHERE name IS NOT NULL AND name <> ''"
        f" AND app_id IN ({_marks(len(app_ids))})",
        list(app_ids),
    )
    return {int(a): str(n) for a, n in await cur.fetchall()}


async def settle_in_flight(cur: Any, status: str, detail: str) -> int:
    """Move rows a previous sender left ``sending`` to ``status``; how many there were."""
    await cur.execute(SETTLE_IN_FLIGHT, (status, detail))
    return int(cur.rowcount)


async def recent_message_ages(cur: Any, period: float) -> dict[str, list[float]]:
    """Per channel, ages in seconds (by the server's clock) of messages sent within ``period``."""
    await cur.execute(RECENT_MESSAGES, (int(period * 1_000_000),))
    ages: dict[str, list[float]] = {}
    for channel, age in await cur.fetchall():
        if age is not None:
            ages.setdefault(str(channel), []).append(float(age) / 1e6)
    return ages


async def move(
    cur: Any,
    rule: str,
    ids: Sequence[str],
    status: str,
    *,
    only_from: str | None = None,
    message_id: str | None = None,
    detail: str | None = None,
    channel_id: str | None = None,
) -> int:
    """Set ``status`` on these rows of ``rule`` (only those in ``only_from``); how many moved.

    ``channel_id`` is recorded with ``sending`` and kept after (a channel's window is rebuilt
    from the messages sent in it).
    """
    delivered = utcnow() if status == SENT else None
    sql = (
        "UPDATE discord_deliveries SET status = %s, message_id = %s, detail = %s,"
        " delivered_at = %s"
        + (", attempts = attempts + 1, channel_id = %s" if status == SENDING else "")
        + f" WHERE rule_name = %s AND event_id IN ({_marks(len(ids))})"
        + (" AND status = %s" if only_from else "")
    )
    args: list[Any] = [status, message_id, detail, delivered]
    if status == SENDING:
        args.append(channel_id)
    args += [rule, *ids]
    if only_from:
        args.append(only_from)
    await cur.execute(sql, args)
    return int(cur.rowcount)


async def disabled_webhook(cur: Any, key: str) -> tuple[str, datetime] | None:
    """(reason, since) when the webhook of this key was found deleted or unauthorised."""
    await cur.execute(DISABLED_WEBHOOK, (key,))
    row = await cur.fetchone()
    return (str(row[0]), row[1]) if row else None


async def disable_webhook(cur: Any, key: str, webhook_id: str, reason: str) -> None:
    """Remember that this webhook must not be called again (by any worker, after restarts)."""
    await cur.execute(DISABLE_WEBHOOK, (key, webhook_id, reason, utcnow()))


async def store_windows(
    cur: Any, windows: Sequence[Window], now: float, webhook_id: str, channel_id: str | None
) -> None:
    """Record ``windows`` (``until`` on the monotonic clock read as ``now``) and the channel."""
    for w in windows:
        left = max(int((w.until - now) * 1_000_000), 0)
        await cur.execute(STORE_WINDOW, (w.scope, w.key, left, w.reason))
    if channel_id:
        await cur.execute(STORE_CHANNEL, (webhook_id, channel_id))


async def open_windows(
    cur: Any, webhook_id: str
) -> tuple[str | None, list[tuple[str, str, float]]]:
    """The webhook's channel, and every window still open for it: (scope, reason, seconds)."""
    await cur.execute(WEBHOOK_CHANNEL, (webhook_id,))
    row = await cur.fetchone()
    channel_id = str(row[0]) if row else None
    await cur.execute(OPEN_WINDOWS, (webhook_id, channel_id or ""))
    waits = [(str(s), str(r), float(us) / 1e6) for s, r, us in await cur.fetchall()]
    return channel_id, waits


async def requeue_uncertain(cur: Any) -> int:
    """Queue every ``uncertain`` change again (an operator's choice: it may show twice)."""
    await cur.execute(
        "UPDATE discord_deliveries SET status = %s, detail = %s WHERE status = %s",
        (PENDING, "uncertain; re-queued by an operator", UNCERTAIN),
    )
    return int(cur.rowcount)


async def enable_webhook(cur: Any, key: str) -> tuple[str, datetime] | None:
    """Forget that this webhook was disabled; (reason, since) if it was."""
    was = await disabled_webhook(cur, key)
    await cur.execute("DELETE FROM discord_webhooks WHERE webhook_key = %s", (key,))
    return was
