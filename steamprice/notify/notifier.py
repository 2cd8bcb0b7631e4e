"""The Discord notifier service: a MySQL outbox of (change, alert rule) drained within every limit.

Exactly once per (change, rule), step by step:

1. The sink agent calls :meth:`DiscordNotifier.enqueue` with a batch of changes. Each change is
   routed to the rules that match it (:class:`RuleIndex`, by app id then region, plus the
   ``default`` rule of the ``DISCORD_*`` settings) and one row per (change, rule) is inserted
   into ``discord_deliveries`` (``INSERT IGNORE`` keyed by ``(event_id, rule_name)``) as
   ``pending`` -- the default rule also records what it skips, as ``skipped`` -- *before* the
   batch's Kafka offsets are acked. A redelivered change finds its rows and adds nothing.
2. One sender per database (a MySQL ``GET_LOCK`` held on a dedicated connection; a killed
   worker's lock is freed when its connection drops) picks, among the rules with pending rows,
   the one whose webhook and channel may post soonest (oldest backlog first), plans a message
   from its oldest rows, marks them ``sending`` (committed), posts, then marks them ``sent``.
   Answers that say "not posted" (429, 5xx, Cloudflare) put them back to ``pending``; a 400
   splits the message until the offending app is alone (``rejected``); a deleted or
   unauthorised webhook disables the rules that use it, and only those.
3. A row still ``sending`` when a sender takes over was in flight when its worker died: it is
   marked ``uncertain`` (counted, logged, not re-posted) unless ``DISCORD_RESEND_UNCERTAIN``.

Limits belong to channels, not rules: a webhook's channel is learned from Discord (``GET`` on the
webhook answers its ``channel_id``); every webhook of a channel shares its message window, and a
channel whose backlog would take longer than ``DISCORD_DIGEST_AFTER_SECONDS`` at that pace
switches its rules to digests, saying so in the message and the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from mode import Service

from steamprice import discount_ends
from steamprice.database import Database, describe_error
from steamprice.metrics import Metrics
from steamprice.models import PriceChange
from steamprice.notify import ledger
from steamprice.notify.embeds import (
    MAX_CONTENT,
    MAX_EMBEDS,
    AppChanges,
    MessagePlan,
    clip,
    group_by_app,
    message_problems,
    payload,
    plan_message,
)
from steamprice.notify.ledger import (
    LEDGER,
    PENDING,
    REJECTED,
    SENDING,
    SENT,
    SKIPPED,
    UNCERTAIN,
    Backlog,
)
from steamprice.notify.lock import SenderLock
from steamprice.notify.rulebook import RuleBook
from steamprice.notify.rules import DEFAULT_RULE, AlertRule, default_rule, redact_webhook
from steamprice.notify.webhook import (
    Gate,
    MessageWindow,
    Outcome,
    Webhook,
    WebhookClient,
    WebhookUrlError,
    new_session,
    parse_webhook_url,
)
from steamprice.report import human_age
from steamprice.settings import Settings
from steamprice.storage import change_problem

logger = logging.getLogger(__name__)

# Rows read per planned message: enough for a full digest (~50 apps in several regions).
FETCH_ROWS = 500
# How often an idle sender looks for rows queued by other workers, and a follower for the lock.
POLL_SECONDS = 1.0
LEADER_POLL_SECONDS = 5.0
# A webhook whose channel could not be learned (Discord unreachable) is asked again after this.
CHANNEL_RETRY_SECONDS = 60.0
# Pending rows of a rule this sender does not know are left alone this long (another worker may
# have read the rule a moment earlier), then retired as skipped.
UNKNOWN_RULE_GRACE_SECONDS = 60.0
OTHER_RULES = "_other"


@dataclass
class Route:
    """One alert rule as the sender sees it: its webhook client, or why it cannot post."""

    rule: AlertRule
    client: WebhookClient | None
    disabled_reason: str = ""

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def enabled(self) -> bool:
        return self.client is not None and not self.disabled_reason


class DiscordNotifier(Service):
    """Queues changes per matching alert rule in the MySQL ledger; one worker posts them."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        database: Database,
        rules: RuleBook | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.database = database
        self.rules = rules
        self.default = default_rule(settings)
        self.routes: dict[str, Route] = {}
        self.leader = False
        self.lock = SenderLock(settings)
        self.gate = Gate()
        self.session: aiohttp.ClientSession | None = None
        # Webhooks (by key) whose channel Discord could not tell yet: when to ask again.
        self._channel_retry: dict[str, float] = {}
        self._windows: dict[str, MessageWindow] = {}
        self._clients: dict[str, WebhookClient] = {}
        # Webhooks found deleted or unauthorised (by any worker): key -> reason.
        self.disabled_hooks: dict[str, str] = {}
        self._routes_version = -1
        self._behind: set[str] = set()
        self._unknown_since: dict[str, float] = {}
        self._labels: dict[str, str] = {}
        # Per channel, when (monotonic) the messages of the last window were sent, as the
        # ledger told at take-over.
        self._recent: dict[str, list[float]] = {}
        # Whether this sender settled the rows a previous one left in flight (see _take_over).
        self._taken_over = False
        self._wake = asyncio.Event()
        self._mirror_wake = asyncio.Event()

    @property
    def active(self) -> bool:
        """Whether notifications are on at all (rules may come and go while it is)."""
        return self.settings.enable_discord

    @property
    def enabled(self) -> bool:
        """Whether at least one rule can post."""
        return any(r.enabled for r in self.routes.values())

    @property
    def disabled_reason(self) -> str:
        """Why rules cannot post (empty when all can): ``rule: reason; ...``."""
        return "; ".join(
            f"{r.name}: {r.disabled_reason}" if r.name != DEFAULT_RULE else r.disabled_reason
            for r in self.routes.values()
            if r.disabled_reason
        )

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        if not self.active:
            logger.info("Discord notifications are off (ENABLE_DISCORD=false)")
            return
        self.session = new_session(self.settings)
        self.metrics.backlog_alert_seconds.set(self.settings.discord_backlog_alert_seconds)
        if self.rules is not None:
            self.rules.subscribe(self._rules_changed)
            # Now, not with the app's other services: those start once the consumer group is
            # joined, which after a crash waits out the dead member's session (about a minute),
            # and the sender waits for the rules (found by test_discord_crash_window.py).
            await self.rules.maybe_start()
        self._refresh_routes()
        if self.default is not None and self.default.name in self.routes:
            route = self.routes[self.default.name]
            if route.client is not None:
                logger.info(
                    "Discord default rule posts to %s (pasted as API v%d; posted on v10)",
                    route.client.webhook.redacted,
                    route.client.webhook.pasted_version,
                )

    async def on_shutdown(self) -> None:
        # Not on_stop: mode calls that before it cancels the sender task, so closing the session
        # there cut a post in flight, which Discord had taken, into a network error; its rows went
        # back to 'pending' and were posted again after the restart (found by
        # tests/integration/test_faults_crash.py). By now _attempt has let that post finish.
        self._release_lock()
        if self.session is not None:
            await self.session.close()
            self.session = None

    def _rules_changed(self) -> None:
        self._wake.set()
        self._mirror_wake.set()

    # ------------------------------------------------------------------ routes

    def _label(self, rule: str) -> str:
        """The metric label of a rule: its name for the first DISCORD_RULE_METRICS_MAX rules."""
        label = self._labels.get(rule)
        if label is None:
            within = len(self._labels) < self.settings.discord_rule_metrics_max
            label = rule if within or rule == DEFAULT_RULE else OTHER_RULES
            self._labels[rule] = label
        return label

    def _current_rules(self) -> list[AlertRule]:
        rules = list(self.rules.rules.values()) if self.rules is not None else []
        if self.default is not None:
            rules.insert(0, self.default)
        return rules

    def _refresh_routes(self) -> None:
        """Rebuild the routes when the rule book changed (clients are kept per webhook)."""
        version = self.rules.version if self.rules is not None else 0
        if version == self._routes_version:
            return
        self._routes_version = version
        routes: dict[str, Route] = {}
        for rule in self._current_rules():
            try:
                hook = parse_webhook_url(rule.webhook.get())
            except WebhookUrlError as exc:
                # Changes are still queued: once the URL is fixed, they are delivered.
                routes[rule.name] = Route(rule, None, str(exc))
                continue
            routes[rule.name] = Route(
                rule, self._client(hook), self.disabled_hooks.get(hook.key, "")
            )
        for name in set(self.routes) - set(routes):
            label = self._label(name)
            if label != OTHER_RULES:
                with contextlib.suppress(KeyError):
                    self.metrics.rule_enabled.remove(label)
        self.routes = routes
        self._publish_states()

    def _client(self, hook: Webhook) -> WebhookClient:
        client = self._clients.get(hook.key)
        if client is None:
            client = WebhookClient(
                hook,
                self.settings,
                self.metrics,
                session=self.session,
                window=self._window(f"webhook:{hook.webhook_id}"),
                gate=self.gate,
            )
            self._clients[hook.key] = client
        return client

    def _attach(self, client: WebhookClient) -> None:
        """Pace ``client`` in the window of the channel it posts into, once that is known."""
        if client.channel_id:
            client.window = self._window(client.channel_id)

    def _window(self, channel: str) -> MessageWindow:
        window = self._windows.get(channel)
        if window is None:
            window = MessageWindow(
                self.settings.discord_channel_messages,
                self.settings.discord_channel_window_seconds,
            )
            # Messages another sender posted a moment ago still count against the window.
            for at in self._recent.get(channel, ()):
                window.record(at)
            self._windows[channel] = window
        return window

    def channel(self, route: Route) -> str:
        """The channel a route posts into; ``webhook:ID`` until Discord told it."""
        assert route.client is not None
        client = route.client
        return client.channel_id or f"webhook:{client.webhook.webhook_id}"

    def _publish_states(self) -> None:
        for route in self.routes.values():
            label = self._label(route.name)
            if label != OTHER_RULES:
                self.metrics.rule_enabled.labels(label).set(1 if route.enabled else 0)
        self.metrics.rule_count.set(len(self.routes))
        self.metrics.discord_webhook_configured.set(1 if self.routes else 0)
        self.metrics.discord_webhook_enabled.set(
            1 if self.routes and all(r.enabled for r in self.routes.values()) else 0
        )

    # ------------------------------------------------------------------ queueing (any worker)

    async def enqueue(self, events: Sequence[PriceChange]) -> int:
        """Record every (change, matching rule) in the ledger; returns how many rows were new.

        Returns only once the rows are committed: the caller acks the Kafka offsets after it.
        Waits for the rule book to be read at start, so no change meets a partial rule set.
        """
        if not self.active or not events:
            return 0
        if self.rules is not None:
            await self.rules.loaded.wait()
        index = self.rules.index if self.rules is not None else None
        now = ledger.utcnow()
        rows: list[tuple[Any, ...]] = []
        seen: set[str] = set()
        skipped: dict[str, int] = {}
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
            text: str | None = None
            if self.default is not None:
                reason = self.default.skip_reason(e)
                text = e.dumps(serializer="json").decode()
                rows.append(self._row(e, DEFAULT_RULE, reason, text, now))
            if index is None or not len(index):
                continue
            routed = index.route(e)
            for rule, _ in routed.skipped:
                skipped[rule.name] = skipped.get(rule.name, 0) + 1
            for rule in routed.matched:
                text = text or e.dumps(serializer="json").decode()
                rows.append(self._row(e, rule.name, None, text, now))
        if not rows:
            return 0
        result = await self.database.write_batch(LEDGER, rows, ledger.queue_rows)
        for row, why in result.rejected:
            self._count_invalid("refused")
            logger.error("Discord sink: the database refused change %r: %s", row[0], why)
        new_queued, new_skipped = result.written[PENDING], result.written[SKIPPED]
        self.metrics.discord_deliveries.labels("queued").inc(new_queued)
        self.metrics.discord_deliveries.labels(SKIPPED).inc(new_skipped)
        # Per rule: what was offered (a redelivered batch after a crash counts again).
        for row in rows:
            outcome = "queued" if row[5] == PENDING else "skipped"
            self.metrics.rule_changes.labels(self._label(row[1]), outcome).inc()
        for name, n in skipped.items():
            self.metrics.rule_changes.labels(self._label(name), "skipped").inc(n)
        if new_queued or new_skipped:
            logger.info(
                "Discord ledger: %d (change, rule) rows queued, %d skipped by the default rule's"
                " filters, %d already known",
                new_queued,
                new_skipped,
                len(rows) - len(result.rejected) - new_queued - new_skipped,
            )
        self._wake.set()
        return new_queued + new_skipped

    @staticmethod
    def _row(e: PriceChange, rule: str, reason: str | None, text: str, now: Any) -> tuple[Any, ...]:
        status = SKIPPED if reason else PENDING
        return (e.event_id, rule, e.app_id, e.cc, e.kind, status, reason, text, now)

    def _count_invalid(self, reason: str) -> None:
        self.metrics.sink_rejected_rows.labels(LEDGER, reason).inc()
        self.metrics.discord_deliveries.labels(REJECTED).inc()

    # ------------------------------------------------------------------ the rules mirror

    @Service.task
    async def _mirror(self) -> None:
        """Keep ``alert_rules`` (for dashboards) equal to the rules this worker applies."""
        if not self.active:
            return
        await self.database.ready.wait()
        if self.rules is not None:
            await self.rules.loaded.wait()
        synced: dict[str, tuple[Any, ...]] | None = None
        while not self.should_stop:
            self._mirror_wake.clear()
            rows = {r.name: self._mirror_row(r) for r in self._current_rules()}
            if rows != synced:
                changed = [
                    row for name, row in rows.items() if synced is None or synced.get(name) != row
                ]
                stamp = ledger.utcnow()
                upserts = [(*row, stamp) for row in changed]
                keep = list(rows)

                async def work(
                    cur: Any, upserts: list[tuple[Any, ...]] = upserts, keep: list[str] = keep
                ) -> None:
                    await ledger.mirror_rules(cur, upserts, keep)

                try:
                    await self.database.transaction("alert_rules", work)
                    synced = rows
                except Exception as exc:
                    if self.should_stop:
                        return
                    logger.warning("alert_rules not mirrored (%s)", describe_error(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._mirror_wake.wait(), 30.0)

    @staticmethod
    def _mirror_row(rule: AlertRule) -> tuple[Any, ...]:
        try:
            hook = parse_webhook_url(rule.webhook.get())
            webhook_id, key = hook.webhook_id, hook.key
        except WebhookUrlError:
            webhook_id, key = "", "0" * 64
        filters = {k: v for k, v in rule.describe().items() if k not in ("name", "webhook")}
        return (
            rule.name,
            webhook_id,
            redact_webhook(rule.webhook.get())[:64],
            key,
            json.dumps(filters, ensure_ascii=False),
            int(rule.digest),
            "settings" if rule.name == DEFAULT_RULE else "topic",
        )

    # ------------------------------------------------------------------ sending (one worker)

    @Service.task
    async def _sender(self) -> None:
        if not self.active:
            return
        await self.database.ready.wait()
        if self.rules is not None:
            await self.rules.loaded.wait()
        while not self.should_stop:
            try:
                self._refresh_routes()
                self._publish_states()
                if not await self._hold_lock():
                    await self._load_disabled()
                    self._clear_backlog_gauges()
                    await self.sleep(LEADER_POLL_SECONDS)
                    continue
                self._wake.clear()
                wait = await self._send_next()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), min(wait, POLL_SECONDS))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.should_stop:
                    return
                # Nothing is lost: the rows stay in MySQL; the loop re-reads them.
                logger.exception("Discord sender failed (%s); retrying", describe_error(exc))
                await self.sleep(POLL_SECONDS)
        self._release_lock()

    async def _hold_lock(self) -> bool:
        """Whether this worker is the sender; tries to become it when nobody is."""
        if self.lock.taken:
            if await self.lock.still_held():
                if not self._taken_over:  # a first attempt failed half-way: finish it
                    await self._take_over()
                return True
            self._release_lock()
        if not await self.lock.acquire():
            return False
        self.leader = True
        self._taken_over = False
        logger.info("This worker is now the Discord sender")
        await self._take_over()
        return True

    def _release_lock(self) -> None:
        self.lock.release()
        self.leader = False

    async def _take_over(self) -> None:
        """New sender: settle rows left in flight, resume the channel windows, check hooks."""
        await self._load_disabled()
        resend = self.settings.discord_resend_uncertain
        target = PENDING if resend else UNCERTAIN
        detail = "was in flight when its worker stopped" + ("; re-sent" if resend else "")
        period = self.settings.discord_channel_window_seconds

        clients = list(self._clients.values())

        async def settle(
            cur: Any,
        ) -> tuple[int, dict[str, list[float]], list[tuple[str | None, list[Any]]]]:
            moved = await ledger.settle_in_flight(cur, target, detail)
            ages = await ledger.recent_message_ages(cur, period)
            stored = [await ledger.open_windows(cur, c.webhook.webhook_id) for c in clients]
            return moved, ages, stored

        moved, ages, stored = await self.database.transaction(LEDGER, settle)
        # A 429 or a ban the previous sender got is still Discord's: a restart must not skip it.
        for client, (channel_id, waits) in zip(clients, stored, strict=True):
            if channel_id and client.channel_id is None:
                client.channel_id = channel_id
                self._attach(client)
            client.honour(waits, time.monotonic())
            for scope, reason, seconds in waits:
                logger.warning(
                    "Discord: a %s wait (%s) from before this sender took over has %.1f s left"
                    " (webhook %s); no request to it before it ends",
                    scope,
                    reason,
                    seconds,
                    client.webhook.redacted,
                )
        now = time.monotonic()
        self._recent = {
            channel: sorted(now - max(age, 0.0) for age in channel_ages)
            for channel, channel_ages in ages.items()
        }
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
        for channel, times in self._recent.items():
            window = self._window(channel)
            if len(window) == 0:
                for at in times:
                    window.record(at)

    async def _load_disabled(self) -> None:
        """Webhooks found deleted or unauthorised before (by any worker): their rules stop."""

        async def read(cur: Any) -> dict[str, str]:
            await cur.execute(
                "SELECT webhook_key, disabled_reason, disabled_at FROM discord_webhooks"
            )
            return {
                str(k): f"{reason} (since {at:%Y-%m-%d %H:%M} UTC)"
                for k, reason, at in await cur.fetchall()
            }

        known = await self.database.transaction(LEDGER, read)
        for key, reason in known.items():
            if key not in self.disabled_hooks:
                self.disabled_hooks[key] = reason
                self._apply_disabled(key, reason, announce=True)

    def _apply_disabled(self, key: str, reason: str, *, announce: bool) -> None:
        for route in self.routes.values():
            if route.client is not None and route.client.webhook.key == key:
                if route.disabled_reason:
                    continue
                route.disabled_reason = reason
                if announce:
                    logger.error(
                        "Discord rule %r disabled: its webhook %s %s; its changes stay queued",
                        route.name,
                        route.client.webhook.redacted,
                        reason,
                    )
        self._publish_states()

    async def _send_next(self) -> float:
        """Post one message for the rule that may post soonest; seconds to wait before next."""
        backlog = await self._backlog()
        pending = {rule: b for (rule, status), b in backlog.items() if status == PENDING}
        now = time.monotonic()
        best: tuple[tuple[bool, float, float], Route, Backlog] | None = None
        for name, b in pending.items():
            route = self.routes.get(name)
            if route is None:
                await self._unknown_rule(name, now)
                continue
            self._unknown_since.pop(name, None)
            if not route.enabled:
                continue
            assert route.client is not None
            delay = route.client.delay(now)
            key = (delay > 0, delay, -b.oldest_seconds)
            if best is None or key < best[0]:
                best = (key, route, b)
        if best is None:
            return POLL_SECONDS
        (_, delay, _), route, b = best
        if delay > 0:
            return delay
        if not await self._learn_channel(route):
            return 0.0
        groups, held = await self._load_pending(route)
        if not groups:
            # Held for an end date on its way: look again in a moment, not in a busy loop.
            return POLL_SECONDS if held else 0.0
        digest, note = self._digest_mode(route, b, pending)
        plan = plan_message(groups, digest=digest)
        await self._deliver(route, groups[: plan.count], plan, note)
        return 0.0

    def _digest_mode(
        self, route: Route, mine: Backlog, pending: dict[str, Backlog]
    ) -> tuple[bool, str | None]:
        """Whether the next message of ``route`` is a digest, and the note that says why."""
        channel = self.channel(route)
        changes = messages = 0
        for name, b in pending.items():
            other = self.routes.get(name)
            if other is not None and other.enabled and self.channel(other) == channel:
                changes += b.changes
                messages += math.ceil(b.apps / MAX_EMBEDS)
        window = self._window(channel)
        seconds = messages * window.period / window.limit
        after = self.settings.discord_digest_after_seconds
        behind = bool(after) and seconds > after
        if behind and channel not in self._behind:
            self._behind.add(channel)
            self.metrics.channel_digest.labels(channel).set(1)
            logger.warning(
                "Discord channel %s is behind: %d changes waiting, about %s at its pace"
                " (DISCORD_DIGEST_AFTER_SECONDS=%g); its rules post digests until it catches up",
                channel,
                changes,
                human_age(seconds),
                after,
            )
        elif not behind and channel in self._behind:
            self._behind.discard(channel)
            self.metrics.channel_digest.labels(channel).set(0)
            logger.info("Discord channel %s caught up: one embed per app again", channel)
        if behind:
            note = clip(
                f"⏩ This channel is behind ({changes:,} price changes waiting, about"
                f" {human_age(seconds)} at Discord's pace): sending digests until it catches up.",
                MAX_CONTENT,
            )
            return True, note
        threshold = self.settings.discord_digest_threshold
        if route.rule.digest or (threshold and mine.apps > threshold):
            return True, None
        return False, None

    async def _unknown_rule(self, name: str, now: float) -> None:
        """Rows of a rule this worker does not know: retired once it is surely gone."""
        if name == DEFAULT_RULE:
            return  # kept until DISCORD_WEBHOOK_URL is set again, as always
        since = self._unknown_since.setdefault(name, now)
        if now - since < UNKNOWN_RULE_GRACE_SECONDS:
            return

        async def work(cur: Any) -> int:
            return await ledger.retire_rule(cur, name, "rule removed")

        retired = await self.database.transaction(LEDGER, work)
        self._unknown_since.pop(name, None)
        if retired:
            logger.warning("Discord rule %r was removed: %d waiting changes skipped", name, retired)

    async def _learn_channel(self, route: Route) -> bool:
        """Ask Discord which channel the route's webhook posts into (once); False: not now."""
        assert route.client is not None
        client = route.client
        key = client.webhook.key
        if client.channel_id and key not in self._channel_retry:
            return True
        now = time.monotonic()
        if self._channel_retry.get(key, 0.0) > now:
            return True  # post meanwhile, paced as a channel of its own
        channel, failure = await client.fetch_channel()
        if channel is not None:
            client.channel_id = channel
            self._channel_retry.pop(key, None)
            self._attach(client)
            webhook_id = client.webhook.webhook_id

            async def work(cur: Any) -> None:
                await ledger.set_rule_channel(cur, key, channel)
                await ledger.store_windows(cur, [], time.monotonic(), webhook_id, channel)

            await self.database.transaction(LEDGER, work)
            logger.info(
                "Discord webhook %s posts into channel %s", client.webhook.redacted, channel
            )
            return True
        assert failure is not None
        if failure.action == "disable":
            await self._disable(client.webhook, failure.detail)
            return False
        client.react(failure)
        self._channel_retry[key] = now + CHANNEL_RETRY_SECONDS
        logger.warning(
            "Discord webhook %s: channel not learned (%s); paced on its own meanwhile",
            client.webhook.redacted,
            failure.detail,
        )
        return failure.action == "backoff"

    async def _backlog(self) -> dict[tuple[str, str], Backlog]:
        """Waiting rows per (rule, status); also refreshes the queue and channel gauges."""
        counts = await self.database.transaction(LEDGER, ledger.backlog)
        pending = sum(b.changes for (_, s), b in counts.items() if s == PENDING)
        uncertain = sum(b.changes for (_, s), b in counts.items() if s == UNCERTAIN)
        self.metrics.queue_size.labels("discord_pending").set(pending)
        self.metrics.queue_size.labels("discord_uncertain").set(uncertain)
        per_channel: dict[str, tuple[int, float]] = {}
        for route in self.routes.values():
            if route.client is None:
                continue
            b = counts.get((route.name, PENDING), Backlog())
            n, age = per_channel.get(self.channel(route), (0, 0.0))
            per_channel[self.channel(route)] = (n + b.changes, max(age, b.oldest_seconds))
        # Replaced as a whole: a channel no rule posts into any more (or a webhook's stand-in
        # "webhook:ID" once its channel is known) must not keep its last value, or alert on it.
        self.metrics.channel_backlog.clear()
        self.metrics.channel_oldest.clear()
        for channel, (n, age) in per_channel.items():
            self.metrics.channel_backlog.labels(channel).set(n)
            self.metrics.channel_oldest.labels(channel).set(age)
        for channel in list(self._behind):
            if channel not in per_channel:
                self._behind.discard(channel)
                self.metrics.channel_digest.labels(channel).set(0)
        return counts

    def _clear_backlog_gauges(self) -> None:
        self.metrics.queue_size.labels("discord_pending").set(0)
        self.metrics.channel_backlog.clear()
        self.metrics.channel_oldest.clear()

    async def _load_pending(self, route: Route) -> tuple[list[AppChanges], bool]:
        """The oldest waiting changes of ``route`` by app, and whether they wait for an end date."""
        name = route.name

        async def read(cur: Any) -> list[tuple[str, str | None]]:
            return await ledger.oldest_pending(cur, name, FETCH_ROWS)

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
            await self._set(route, broken, REJECTED, detail="unreadable change_json")
            self._count(route, REJECTED, len(broken))
        if not events:
            return [], False
        events, hold = await self._with_end_dates(events)
        if hold:
            return [], True
        names = await self._names({e.app_id for e in events})
        return group_by_app(events, names), False

    async def _with_end_dates(self, events: list[PriceChange]) -> tuple[list[PriceChange], bool]:
        """The events with the announced end of their new discount, when GetItems gave one.

        Also whether to hold the message a moment: a new discount's end date is asked right
        after its price, so it usually comes within seconds; the alert waits for it at most
        ``DISCORD_END_DATE_WAIT_SECONDS``, and never while GetItems is failing.
        """
        ids = sorted({e.app_id for e in events})

        async def read(cur: Any) -> tuple[dict[tuple[int, str], discount_ends.EndRow], bool]:
            return await discount_ends.end_rows(cur, ids), await discount_ends.any_failing(cur)

        rows, failing = await self.database.transaction(LEDGER, read)
        wait = timedelta(seconds=self.settings.discord_end_date_wait_seconds)
        now = datetime.now(UTC)
        out: list[PriceChange] = []
        hold = False
        for event in events:
            prices = discount_ends.discount_of(
                event.new_status, event.new_initial, event.new_final, event.new_discount
            )
            row = rows.get((event.app_id, event.cc))
            end = discount_ends.known_end(prices, event.observed_at, row)
            if end is not None and end != event.discount_ends_at:
                event = PriceChange(**{**event.asdict(), "discount_ends_at": end})
            elif end is None and event.discount_ends_at is None:
                hold = hold or discount_ends.may_learn_end(
                    prices, event.observed_at, row, now=now, wait=wait, failing=failing
                )
            out.append(event)
        return out, hold

    async def _names(self, app_ids: set[int]) -> dict[int, str]:
        ids = sorted(app_ids)

        async def read(cur: Any) -> dict[int, str]:
            return await ledger.app_names(cur, ids)

        return await self.database.transaction(LEDGER, read)

    def _count(self, route: Route, status: str, n: int) -> None:
        self.metrics.discord_deliveries.labels(status).inc(n)
        outcome = "sent" if status == SENT else "failed"
        self.metrics.rule_changes.labels(self._label(route.name), outcome).inc(n)

    async def _deliver(
        self, route: Route, groups: Sequence[AppChanges], plan: MessagePlan, note: str | None
    ) -> None:
        """Post one planned message until it is sent, rejected (split), or cannot be sent."""
        ids = [e.event_id for g in groups for e in g.events]
        problems = message_problems(plan.embeds)
        outcome: Outcome | None = None
        if problems:  # a planning bug: never send what Discord would refuse
            logger.error("Discord message breaks limits (%s): splitting it", "; ".join(problems))
            outcome = Outcome("reject", detail="limits: " + "; ".join(problems))
        body = payload(plan.embeds)
        if note:
            body["content"] = note
        if plan.digest:
            logger.info(
                "Discord rule %r: a digest of %d apps%s",
                route.name,
                plan.count,
                " (channel behind)" if note else "",
            )
        while outcome is None:
            await self._wait_turn(route)
            if self.should_stop or not route.enabled or not await self._hold_lock():
                return
            if not await self._set(route, ids, SENDING, only_from=PENDING):
                return
            outcome = await self._attempt(route, body, ids, plan.digest)
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
                while part and route.enabled and not self.should_stop:
                    sub = plan_message(part, digest=plan.digest)
                    await self._deliver(route, part[: sub.count], sub, note)
                    part = part[sub.count :]
            return
        logger.error(
            "Discord refused the notification of app %d for rule %r (%s): recorded as rejected",
            groups[0].app_id,
            route.name,
            outcome.detail,
        )
        await self._set(route, ids, REJECTED, detail=outcome.detail[:255])
        self._count(route, REJECTED, len(ids))

    async def _attempt(
        self, route: Route, body: dict[str, Any], ids: list[str], digest: bool
    ) -> Outcome:
        """One POST and its bookkeeping, finished even if the service stops meanwhile."""
        task = asyncio.ensure_future(self._post_and_record(route, body, ids, digest))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # Stopping while a request is in flight: let it finish and be recorded, or the
            # change would be left 'sending' (and so 'uncertain') although its fate is known.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, self.settings.discord_request_timeout_seconds + 5)
            raise

    async def _post_and_record(
        self, route: Route, body: dict[str, Any], ids: list[str], digest: bool
    ) -> Outcome:
        client = route.client
        assert client is not None
        outcome = await client.post(body)
        if outcome.action == "sent":
            self._attach(client)  # the answer may name another channel than we knew
            await self._set(
                route,
                ids,
                SENT,
                message_id=outcome.message_id,
                detail="digest" if digest else None,
                with_windows=True,
            )
            self._count(route, SENT, len(ids))
            self.metrics.discord_messages.labels("digest" if digest else "embeds").inc()
            return outcome
        # Not posted (or refused): the rows go back to the queue before any wait, in the same
        # commit as the window the answer opened (a sender killed now leaves both behind).
        client.react(outcome)
        await self._set(route, ids, PENDING, only_from=SENDING, with_windows=True)
        if outcome.action == "disable":
            await self._disable(client.webhook, outcome.detail)
        return outcome

    async def _wait_turn(self, route: Route) -> None:
        """Sleep until the bucket, any 429 pause and the channel window all allow a message."""
        assert route.client is not None
        while not self.should_stop:
            wait = route.client.delay(time.monotonic())
            if wait <= 0:
                return
            await self.sleep(wait)

    async def _disable(self, webhook: Webhook, detail: str) -> None:
        """A deleted or unauthorised webhook: its rules stop, remembered for every worker."""
        self.disabled_hooks[webhook.key] = detail
        self._apply_disabled(webhook.key, detail, announce=True)
        self.metrics.discord_deliveries.labels("disabled").inc()

        async def work(cur: Any) -> None:
            await ledger.disable_webhook(cur, webhook.key, webhook.webhook_id, detail[:255])

        await self.database.transaction(LEDGER, work)

    async def _set(
        self,
        route: Route,
        ids: Sequence[str],
        status: str,
        *,
        only_from: str | None = None,
        message_id: str | None = None,
        detail: str | None = None,
        with_windows: bool = False,
    ) -> bool:
        """Move ledger rows to ``status``; with ``only_from``, True only if all of them moved.

        ``with_windows``: store, in the same transaction, the rate-limit windows and the channel
        the webhook client learnt since the last store.
        """
        if not ids:
            return True
        rule = route.name
        channel = self.channel(route) if status == SENDING else None
        client = route.client
        windows = client.unsaved() if with_windows and client is not None else []
        learned = with_windows and client is not None and client.channel_learned
        channel_id = client.channel_id if learned and client is not None else None

        async def work(cur: Any) -> int:
            moved = await ledger.move(
                cur,
                rule,
                ids,
                status,
                only_from=only_from,
                message_id=message_id,
                detail=detail,
                channel_id=channel,
            )
            if client is not None and (windows or channel_id):
                await ledger.store_windows(
                    cur, windows, time.monotonic(), client.webhook.webhook_id, channel_id
                )
            if client is not None and channel_id:
                await ledger.set_rule_channel(cur, client.webhook.key, channel_id)
            return moved

        moved = await self.database.transaction(LEDGER, work)
        if client is not None and (windows or channel_id):
            client.saved(windows)
            if channel_id == client.channel_id:
                client.channel_learned = False
        if only_from and moved != len(ids):
            logger.warning(
                "Discord ledger: %d of %d changes of rule %r were no longer %s; re-planned",
                len(ids) - moved,
                len(ids),
                rule,
                only_from,
            )
            if status == SENDING:
                await self._set(route, ids, PENDING, only_from=SENDING)
            return False
        return True
