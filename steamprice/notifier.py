"""The Discord notifier service: a MySQL outbox drained through one webhook within its limits.

Exactly once, step by step:

1. The sink agent calls :meth:`DiscordNotifier.enqueue` with a batch of changes. Each change is
   inserted into ``discord_deliveries`` (``INSERT IGNORE`` keyed by ``event_id``) as ``pending``,
   or ``skipped`` when an opt-in filter rejects it, *before* the batch's Kafka offsets are acked.
   A redelivered change (crash, restart, rebalance) finds its row and adds nothing.
2. One sender per database (a MySQL ``GET_LOCK`` held on a dedicated connection; a killed
   worker's lock is freed when its connection drops) plans the next message from the oldest
   pending rows, marks them ``sending`` (committed), posts, then marks them ``sent`` with the
   message id. Answers that say "not posted" (429, 5xx, Cloudflare, disabled) put them back to
   ``pending``; a 400 splits the message until the offending app is alone (``rejected``).
3. A row still ``sending`` when a sender takes over was in flight when its worker died: it may
   or may not have reached Discord, and webhooks offer no idempotency key to find out. It is
   marked ``uncertain`` (counted, logged, not re-posted) unless ``DISCORD_RESEND_UNCERTAIN``.

Because posting is decoupled from Kafka, a kill between a post and the offset commit costs a
redelivery that inserts nothing. The only ambiguous window is the HTTP round trip itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import aiomysql
from mode import Service

from steamprice.database import TRANSIENT_ERRORS, Database, connect_kwargs, describe_error
from steamprice.discord import (
    AppChanges,
    MessagePlan,
    MessageWindow,
    NotifyFilter,
    Outcome,
    Webhook,
    WebhookUrlError,
    classify_response,
    group_by_app,
    message_problems,
    parse_webhook_url,
    payload,
    plan_message,
)
from steamprice.metrics import Metrics
from steamprice.models import PriceChange
from steamprice.settings import Settings
from steamprice.storage import change_problem

logger = logging.getLogger(__name__)

ENDPOINT = "discord"
LEDGER = "discord_ledger"
# Rows read per planned message: enough for a full digest (~50 apps in several regions).
FETCH_ROWS = 500
# How often an idle sender looks for rows queued by other workers, and a follower for the lock.
POLL_SECONDS = 1.0
LEADER_POLL_SECONDS = 5.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 300.0

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


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


async def _queue_rows(cur: Any, rows: Sequence[tuple[Any, ...]]) -> Counter[str]:
    """Insert ledger rows; how many were new, per status."""
    written: Counter[str] = Counter()
    for status in (PENDING, SKIPPED):
        part = [r for r in rows if r[4] == status]
        if part:
            await cur.executemany(QUEUE_CHANGE, part)
            written[status] += max(int(cur.rowcount), 0)
    return written


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


def lock_name(database: str) -> str:
    """The cluster-wide sender lock of one database (GET_LOCK names are at most 64 chars)."""
    return "steamprice.discord." + hashlib.sha1(database.encode()).hexdigest()[:24]


class DiscordNotifier(Service):
    """Queues changes in the MySQL ledger and, in one worker at a time, posts them."""

    def __init__(
        self, settings: Settings, metrics: Metrics, database: Database, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.database = database
        self.filters = NotifyFilter.from_settings(settings)
        self.webhook: Webhook | None = None
        self.disabled_reason = ""
        self.leader = False
        self.window = MessageWindow(
            settings.discord_channel_messages, settings.discord_channel_window_seconds
        )
        self._session: aiohttp.ClientSession | None = None
        self._lock_conn: aiomysql.Connection | None = None
        # Whether this sender settled the rows a previous one left in flight (see _take_over).
        self._taken_over = False
        self._wake = asyncio.Event()
        self._not_before = 0.0  # monotonic time before which no request may leave
        self._backoff = FIRST_BACKOFF_SECONDS

    @property
    def enabled(self) -> bool:
        return self.webhook is not None and not self.disabled_reason

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        if not self.settings.discord_enabled:
            logger.info("Discord notifications are off (no DISCORD_WEBHOOK_URL or ENABLE_DISCORD)")
            return
        try:
            self.webhook = parse_webhook_url(self.settings.discord_webhook_url.get())
        except WebhookUrlError as exc:
            # Changes are still queued: once the URL is fixed, they are delivered.
            self.disabled_reason = str(exc)
            self.metrics.discord_webhook_enabled.set(0)
            logger.error("%s: Discord notifications are disabled", exc)
            return
        self.metrics.discord_webhook_enabled.set(1)
        logger.info(
            "Discord notifications to %s (pasted as API v%d; posted on v10, wait=true)",
            self.webhook.redacted,
            self.webhook.pasted_version,
        )
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.discord_request_timeout_seconds),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def on_shutdown(self) -> None:
        # Not on_stop: mode calls that before it cancels the sender task, so closing the session
        # there cut a post in flight, which Discord had taken, into a network error; its rows went
        # back to 'pending' and were posted again after the restart (found by
        # tests/integration/test_faults_crash.py). By now _attempt has let that post finish.
        await self._release_lock()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ queueing (any worker)

    async def enqueue(self, events: Sequence[PriceChange]) -> int:
        """Record every change in the ledger (pending or skipped); returns how many were new.

        Returns only once the rows are committed: the caller acks the Kafka offsets after it.
        """
        if not self.settings.discord_enabled or not events:
            return 0
        now = _utcnow()
        rows: list[tuple[Any, ...]] = []
        seen: set[str] = set()
        for e in events:
            if e.event_id in seen:
                continue
            seen.add(e.event_id)
            problem = change_problem(e)
            if problem is not None:
                # The MySQL sink refuses it too: there is nothing a notification could show.
                self._count_invalid("invalid")
                logger.error("Discord sink: change %r not notified: %s", e.event_id, problem)
                continue
            reason = self.filters.skip_reason(e)
            rows.append(
                (
                    e.event_id,
                    e.app_id,
                    e.cc,
                    e.kind,
                    SKIPPED if reason else PENDING,
                    reason,
                    e.dumps(serializer="json").decode(),
                    now,
                )
            )
        result = await self.database.write_batch(LEDGER, rows, _queue_rows)
        for row, why in result.rejected:
            self._count_invalid("refused")
            logger.error("Discord sink: the database refused change %r: %s", row[0], why)
        new_queued, new_skipped = result.written[PENDING], result.written[SKIPPED]
        self.metrics.discord_deliveries.labels("queued").inc(new_queued)
        self.metrics.discord_deliveries.labels(SKIPPED).inc(new_skipped)
        if new_queued or new_skipped:
            logger.info(
                "Discord ledger: %d changes queued, %d skipped by filters, %d already known",
                new_queued,
                new_skipped,
                len(rows) - len(result.rejected) - new_queued - new_skipped,
            )
        self._wake.set()
        return new_queued + new_skipped

    def _count_invalid(self, reason: str) -> None:
        self.metrics.sink_rejected_rows.labels(LEDGER, reason).inc()
        self.metrics.discord_deliveries.labels(REJECTED).inc()

    # ------------------------------------------------------------------ sending (one worker)

    @Service.task
    async def _sender(self) -> None:
        if self.webhook is None:
            return
        await self.database.ready.wait()
        while not self.should_stop and self.enabled:
            try:
                if not await self._hold_lock():
                    await self._check_disabled()
                    self.metrics.queue_size.labels("discord_pending").set(0)
                    await self.sleep(LEADER_POLL_SECONDS)
                    continue
                self._wake.clear()
                if not await self._send_next():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.should_stop:
                    return
                # Nothing is lost: the rows stay in MySQL; the loop re-reads them.
                logger.exception("Discord sender failed (%s); retrying", describe_error(exc))
                await self.sleep(POLL_SECONDS)
        await self._release_lock()

    async def _hold_lock(self) -> bool:
        """Whether this worker is the sender; tries to become it when nobody is."""
        name = lock_name(self.settings.mysql_db)
        if self._lock_conn is not None:
            try:
                async with self._lock_conn.cursor() as cur:
                    await cur.execute("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (name,))
                    (mine,) = await cur.fetchone()
                if mine:
                    if not self._taken_over:  # a first attempt failed half-way: finish it
                        await self._take_over()
                    return self.enabled
            except TRANSIENT_ERRORS as exc:
                logger.warning("Discord sender lock lost (%s)", describe_error(exc))
            await self._release_lock()
        conn: aiomysql.Connection | None = None
        try:
            conn = await aiomysql.connect(**connect_kwargs(self.settings), autocommit=True)
            async with conn.cursor() as cur:
                await cur.execute("SELECT GET_LOCK(%s, 0)", (name,))
                (got,) = await cur.fetchone()
        except TRANSIENT_ERRORS as exc:
            logger.warning("Discord sender lock unavailable (%s)", describe_error(exc))
            if conn is not None:
                conn.close()
            return False
        if got != 1:
            conn.close()
            return False
        self._lock_conn = conn
        self.leader = True
        self._taken_over = False
        logger.info("This worker is now the Discord sender")
        await self._take_over()
        return self.enabled

    async def _release_lock(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        self.leader = False
        if conn is not None:
            # Closing the session frees the lock even if RELEASE_LOCK cannot be sent.
            conn.close()

    async def _take_over(self) -> None:
        """New sender: settle rows left in flight, resume the channel window, check the hook."""
        await self._check_disabled()
        resend = self.settings.discord_resend_uncertain
        target = PENDING if resend else UNCERTAIN
        detail = "was in flight when its worker stopped" + ("; re-sent" if resend else "")

        async def settle(cur: Any) -> tuple[int, list[float]]:
            await cur.execute(
                "UPDATE discord_deliveries SET status = %s, detail = %s WHERE status = 'sending'",
                (target, detail),
            )
            moved = int(cur.rowcount)
            window = int(self.window.period * 1_000_000)
            await cur.execute(RECENT_MESSAGES, (window,))
            ages = [float(row[0]) / 1e6 for row in await cur.fetchall() if row[0] is not None]
            return moved, ages

        moved, ages = await self.database.transaction(LEDGER, settle)
        self._taken_over = True
        if moved:
            self.metrics.discord_deliveries.labels("requeued" if resend else UNCERTAIN).inc(moved)
            logger.warning(
                "Discord: %d changes were being posted when the previous sender stopped; %s",
                moved,
                "they are queued again (DISCORD_RESEND_UNCERTAIN)"
                if resend
                else "they may or may not have been posted and are marked 'uncertain' in"
                " discord_deliveries, not re-posted (no duplicate)",
            )
        # Messages another sender posted a moment ago still count against the channel window.
        now = time.monotonic()
        for age in sorted(ages, reverse=True):
            self.window.record(now - max(age, 0.0))

    async def _check_disabled(self) -> None:
        """Whether this webhook was found deleted or unauthorised before (by any worker)."""
        if self.webhook is None or self.disabled_reason:
            return
        key = self.webhook.key

        async def read(cur: Any) -> tuple[Any, ...] | None:
            await cur.execute(DISABLED_WEBHOOK, (key,))
            row = await cur.fetchone()
            return tuple(row) if row else None

        row = await self.database.transaction(LEDGER, read)
        if row:
            reason, at = row
            self.disabled_reason = f"{reason} (since {at:%Y-%m-%d %H:%M} UTC)"
            self.metrics.discord_webhook_enabled.set(0)
            logger.error(
                "Discord webhook %s was disabled: %s; not calling it until DISCORD_WEBHOOK_URL"
                " changes; changes stay queued in discord_deliveries",
                self.webhook.redacted,
                self.disabled_reason,
            )

    async def _send_next(self) -> bool:
        """Post the next message from the oldest pending changes; False when none wait."""
        backlog = await self._backlog()
        if not backlog[0]:
            return False
        groups = await self._load_pending()
        if not groups:
            return False
        threshold = self.settings.discord_digest_threshold
        digest = bool(threshold) and backlog[1] > threshold
        plan = plan_message(groups, digest=digest)
        if plan.digest:
            logger.info(
                "Discord backlog of %d changes (%d apps): sending a digest of %d apps",
                backlog[0],
                backlog[1],
                plan.count,
            )
        await self._deliver(groups[: plan.count], plan)
        return True

    async def _backlog(self) -> tuple[int, int]:
        """(pending changes, pending apps); also refreshes the queue gauges."""

        async def read(cur: Any) -> dict[str, tuple[int, int]]:
            await cur.execute(BACKLOG)
            return {str(s): (int(n), int(a)) for s, n, a in await cur.fetchall()}

        counts = await self.database.transaction(LEDGER, read)
        pending = counts.get(PENDING, (0, 0))
        self.metrics.queue_size.labels("discord_pending").set(pending[0])
        self.metrics.queue_size.labels("discord_uncertain").set(counts.get(UNCERTAIN, (0, 0))[0])
        return pending

    async def _load_pending(self) -> list[AppChanges]:
        async def read(cur: Any) -> list[tuple[str, str | None]]:
            await cur.execute(OLDEST_PENDING, (FETCH_ROWS,))
            return [(str(a), b) for a, b in await cur.fetchall()]

        rows = await self.database.transaction(LEDGER, read)
        events: list[PriceChange] = []
        broken: list[str] = []
        for event_id, text in rows:
            try:
                event = PriceChange.loads((text or "").encode(), serializer="json")
                if not isinstance(event, PriceChange):
                    raise TypeError(type(event).__name__)
                events.append(event)
            except Exception as exc:  # a hand-edited or truncated row must not stall the queue
                logger.error("Discord ledger row %s is unreadable (%s): rejected", event_id, exc)
                broken.append(event_id)
        if broken:
            await self._set(broken, REJECTED, detail="unreadable change_json")
            self.metrics.discord_deliveries.labels(REJECTED).inc(len(broken))
        names = await self._names({e.app_id for e in events}) if events else {}
        return group_by_app(events, names)

    async def _names(self, app_ids: set[int]) -> dict[int, str]:
        ids = sorted(app_ids)

        async def read(cur: Any) -> dict[int, str]:
            await cur.execute(
                "SELECT app_id, name FROM apps WHERE name IS NOT NULL AND name <> ''"
                f" AND app_id IN ({_marks(len(ids))})",
                ids,
            )
            return {int(a): str(n) for a, n in await cur.fetchall()}

        return await self.database.transaction(LEDGER, read)

    async def _deliver(self, groups: Sequence[AppChanges], plan: MessagePlan) -> None:
        """Post one planned message until it is sent, rejected (split), or cannot be sent."""
        ids = [e.event_id for g in groups for e in g.events]
        problems = message_problems(plan.embeds)
        outcome: Outcome | None = None
        if problems:  # a planning bug: never send what Discord would refuse
            logger.error("Discord message breaks limits (%s): splitting it", "; ".join(problems))
            outcome = Outcome("reject", detail="limits: " + "; ".join(problems))
        body = payload(plan.embeds)
        while outcome is None:
            await self._wait_turn()
            if self.should_stop or not await self._hold_lock():
                return
            if not await self._set(ids, SENDING, only_from=PENDING):
                return
            outcome = await self._attempt(body, ids, plan.digest)
            if outcome.action == "sent":
                return
            if outcome.action in ("retry_after", "ban", "backoff"):
                outcome = None  # the same payload again, once the wait is over
        if outcome.action == "disable":
            return
        # reject: isolate the offending app by halves; the others go through.
        if len(groups) > 1:
            half = len(groups) // 2
            for part in (groups[:half], groups[half:]):
                while part and self.enabled and not self.should_stop:
                    sub = plan_message(part, digest=plan.digest)
                    await self._deliver(part[: sub.count], sub)
                    part = part[sub.count :]
            return
        logger.error(
            "Discord refused the notification of app %d (%s): skipped, recorded as rejected",
            groups[0].app_id,
            outcome.detail,
        )
        await self._set(ids, REJECTED, detail=outcome.detail[:255])
        self.metrics.discord_deliveries.labels(REJECTED).inc(len(ids))

    async def _attempt(self, body: dict[str, Any], ids: list[str], digest: bool) -> Outcome:
        """One POST and its bookkeeping, finished even if the service stops meanwhile."""
        task = asyncio.ensure_future(self._post_and_record(body, ids, digest))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # Stopping while a request is in flight: let it finish and be recorded, or the
            # change would be left 'sending' (and so 'uncertain') although its fate is known.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, self.settings.discord_request_timeout_seconds + 5)
            raise

    async def _post_and_record(self, body: dict[str, Any], ids: list[str], digest: bool) -> Outcome:
        outcome = await self._post(body)
        if outcome.action == "sent":
            self._backoff = FIRST_BACKOFF_SECONDS
            await self._set(
                ids, SENT, message_id=outcome.message_id, detail="digest" if digest else None
            )
            self.metrics.discord_deliveries.labels(SENT).inc(len(ids))
            self.metrics.discord_messages.labels("digest" if digest else "embeds").inc()
            return outcome
        # Not posted (or refused): the rows go back to the queue before any wait.
        self._react(outcome)
        await self._set(ids, PENDING, only_from=SENDING)
        if outcome.action == "disable":
            await self._remember_disabled()
        return outcome

    async def _post(self, body: dict[str, Any]) -> Outcome:
        """One request; a network error or timeout is an Outcome too (``backoff``)."""
        assert self._session is not None and self.webhook is not None
        started = time.monotonic()
        try:
            async with self._session.post(self.webhook.url, json=body) as resp:
                raw = await resp.read()
                # Header names are case-insensitive (HTTP/2 sends them in lower case).
                status = resp.status
                headers = {k.lower(): v for k, v in resp.headers.items()}
        except (aiohttp.ClientError, TimeoutError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else "network"
            self.metrics.api_requests.labels(ENDPOINT, kind).inc()
            # The class name only: aiohttp errors may quote the URL, which holds the token.
            return Outcome("backoff", detail=f"{kind}: {exc.__class__.__name__}")
        finally:
            self.metrics.api_response_seconds.labels(ENDPOINT).observe(time.monotonic() - started)
        received = time.monotonic()
        self.metrics.api_requests.labels(ENDPOINT, str(status)).inc()
        self._obey_headers(headers, received)
        outcome = classify_response(
            status,
            headers,
            raw,
            max_wait=self.settings.discord_max_retry_wait_seconds,
            api_version=self.webhook.api_version,
        )
        if outcome.action == "sent":
            self.window.record(received)
            self.metrics.last_success.labels(ENDPOINT).set(time.time())
        return outcome

    def _react(self, outcome: Outcome) -> None:
        """Set the pause an answer asks for; disable the webhook when it is gone."""
        now = time.monotonic()
        if outcome.action == "retry_after":
            self.metrics.discord_rate_limited.labels(outcome.scope).inc()
            self.metrics.discord_deliveries.labels("rate_limited").inc()
            self._pause(now + outcome.wait, outcome.scope)
            logger.warning(
                "Discord 429 (%s%s): waiting %.2f s%s before resending the same message",
                outcome.scope,
                ", global: every send paused" if outcome.global_ else "",
                outcome.wait,
                " (capped by DISCORD_MAX_RETRY_WAIT_SECONDS)" if outcome.capped else "",
            )
        elif outcome.action == "ban":
            pause = self.settings.discord_ban_pause_seconds
            self.metrics.discord_rate_limited.labels("cloudflare").inc()
            self.metrics.discord_deliveries.labels("banned").inc()
            self._pause(now + pause, "banned")
            logger.error(
                "Discord blocked this IP (Cloudflare ban: 429 without rate-limit headers);"
                " pausing every send for %.0f s; messages stay queued",
                pause,
            )
        elif outcome.action == "backoff":
            wait = self._backoff * random.uniform(0.8, 1.2)  # jitter: no synchronized retries
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)
            self._not_before = max(self._not_before, now + wait)
            logger.warning("Discord answered %s; retrying in %.1f s", outcome.detail, wait)
        elif outcome.action == "disable":
            self._disable(outcome.detail)

    def _pause(self, until: float, reason: str) -> None:
        self.metrics.rate_limit_pauses.labels(ENDPOINT, reason).inc()
        self.metrics.rate_limit_pause_seconds.labels(ENDPOINT).inc(
            max(until - max(self._not_before, time.monotonic()), 0.0)
        )
        self._not_before = max(self._not_before, until)

    def _obey_headers(self, headers: dict[str, str], now: float) -> None:
        """When the bucket is empty, hold the next request until it resets."""
        remaining = headers.get("x-ratelimit-remaining")
        reset_after = headers.get("x-ratelimit-reset-after")
        if remaining is None or reset_after is None:
            return
        try:
            if int(float(remaining)) <= 0:
                wait = min(float(reset_after), self.settings.discord_max_retry_wait_seconds)
                self._not_before = max(self._not_before, now + max(wait, 0.0))
        except ValueError:
            logger.warning("Discord sent unreadable rate-limit headers; ignoring them")

    async def _wait_turn(self) -> None:
        """Sleep until the bucket, any 429 pause and the channel window all allow a message."""
        while not self.should_stop:
            now = time.monotonic()
            wait = max(self._not_before - now, self.window.delay(now))
            if wait <= 0:
                return
            await self.sleep(wait)

    async def _remember_disabled(self) -> None:
        """Persist the disabled state, so that no worker calls this webhook again."""
        webhook, reason = self.webhook, self.disabled_reason[:255]
        assert webhook is not None

        async def work(cur: Any) -> None:
            await cur.execute(DISABLE_WEBHOOK, (webhook.key, webhook.webhook_id, reason, _utcnow()))

        await self.database.transaction(LEDGER, work)

    def _disable(self, detail: str) -> None:
        assert self.webhook is not None
        self.disabled_reason = detail
        self.metrics.discord_webhook_enabled.set(0)
        self.metrics.discord_deliveries.labels("disabled").inc()
        logger.error(
            "Discord webhook %s disabled (%s): no more calls until DISCORD_WEBHOOK_URL changes;"
            " changes stay queued in discord_deliveries",
            self.webhook.redacted,
            detail,
        )

    async def _set(
        self,
        ids: Sequence[str],
        status: str,
        *,
        only_from: str | None = None,
        message_id: str | None = None,
        detail: str | None = None,
    ) -> bool:
        """Move ledger rows to ``status``; with ``only_from``, True only if all of them moved."""
        if not ids:
            return True
        delivered = _utcnow() if status == SENT else None
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

        async def work(cur: Any) -> int:
            await cur.execute(sql, args)
            return int(cur.rowcount)

        moved = await self.database.transaction(LEDGER, work)
        if only_from and moved != len(ids):
            logger.warning(
                "Discord ledger: %d of %d changes were no longer %s; message re-planned",
                len(ids) - moved,
                len(ids),
                only_from,
            )
            if status == SENDING:
                await self._set(ids, PENDING, only_from=SENDING)
            return False
        return True
