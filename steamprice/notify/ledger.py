"""The delivery ledger's SQL: deliveries, disabled webhooks and the rate-limit windows.

``discord_deliveries`` has one row per change: ``pending`` -> ``sending`` -> ``sent`` (or
``rejected``); ``skipped`` by a filter; ``uncertain`` when a sender died mid-post.
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
    " (event_id, app_id, cc, kind, status, detail, change_json, queued_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE event_id = event_id"
)
BACKLOG = (
    "SELECT status, COUNT(*), COUNT(DISTINCT app_id) FROM discord_deliveries"
    " WHERE status IN ('pending', 'uncertain') GROUP BY status"
)
OLDEST_PENDING = (
    "SELECT event_id, change_json FROM discord_deliveries WHERE status = 'pending'"
    " ORDER BY queued_at, event_id LIMIT %s"
)
SETTLE_IN_FLIGHT = "UPDATE discord_deliveries SET status = %s, detail = %s WHERE status = 'sending'"
RECENT_MESSAGES = (
    "SELECT TIMESTAMPDIFF(MICROSECOND, MAX(delivered_at), UTC_TIMESTAMP(6))"
    " FROM discord_deliveries WHERE status = 'sent'"
    " AND delivered_at >= UTC_TIMESTAMP(6) - INTERVAL %s MICROSECOND GROUP BY message_id"
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
        part = [r for r in rows if r[4] == status]
        if part:
            await cur.executemany(QUEUE_CHANGE, part)
            written[status] += max(int(cur.rowcount), 0)
    return written


async def backlog(cur: Any) -> dict[str, tuple[int, int]]:
    """(changes, distinct apps) per waiting status (``pending``, ``uncertain``)."""
    await cur.execute(BACKLOG)
    return {str(s): (int(n), int(a)) for s, n, a in await cur.fetchall()}


async def oldest_pending(cur: Any, limit: int) -> list[tuple[str, str | None]]:
    """(event_id, change_json) of the oldest pending rows, in queue order."""
    await cur.execute(OLDEST_PENDING, (limit,))
    return [(str(a), b) for a, b in await cur.fetchall()]


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


async def recent_message_ages(cur: Any, period: float) -> list[float]:
    """Ages in seconds (by the server's clock) of the messages sent within ``period``."""
    await cur.execute(RECENT_MESSAGES, (int(period * 1_000_000),))
    return [float(row[0]) / 1e6 for row in await cur.fetchall() if row[0] is not None]


async def move(
    cur: Any,
    ids: Sequence[str],
    status: str,
    *,
    only_from: str | None = None,
    message_id: str | None = None,
    detail: str | None = None,
) -> int:
    """Set ``status`` on these rows (only those in ``only_from``, if given); how many moved."""
    delivered = utcnow() if status == SENT else None
    sql = (
        "UPDATE discord_deliveries SET status = %s, message_id = %s, detail = %s,"
        " delivered_at = %s"
        + (", attempts = attempts + 1" if status == SENDING else "")
        + f" WHERE event_id IN ({_marks(len(ids))})"
        + (" AND status = %s" if only_from else "")
    )
    args: list[Any] = [status, message_id, detail, delivered, *ids]
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
