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
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from mode import Service

from steamprice import discount_ends
from steamprice.database import Database, describe_error
from steamprice.metrics import Metrics
from steamprice.models import PriceChange
from steamprice.notify import ledger
from steamprice.notify.embeds import (
    AppChanges,
    MessagePlan,
    group_by_app,
    message_problems,
    payload,
    plan_message,
)
from steamprice.notify.filters import NotifyFilter
from steamprice.notify.ledger import (
    LEDGER,
    PENDING,
    REJECTED,
    SENDING,
    SENT,
    SKIPPED,
    UNCERTAIN,
)
from steamprice.notify.lock import SenderLock
from steamprice.notify.webhook import Outcome, WebhookClient, WebhookUrlError, parse_webhook_url
from steamprice.settings import Settings
from steamprice.storage import change_problem

logger = logging.getLogger(__name__)

# Rows read per planned message: enough for a full digest (~50 apps in several regions).
FETCH_ROWS = 500
# How often an idle sender looks for rows queued by other workers, and a follower for the lock.
POLL_SECONDS = 1.0
LEADER_POLL_SECONDS = 5.0


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
        self.client: WebhookClient | None = None
        self.disabled_reason = ""
        self.leader = False
        self.lock = SenderLock(settings)
        # Whether this sender settled the rows a previous one left in flight (see _take_over).
        self._taken_over = False
        self._wake = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return self.client is not None and not self.disabled_reason

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        if not self.settings.discord_enabled:
            logger.info("Discord notifications are off (no DISCORD_WEBHOOK_URL or ENABLE_DISCORD)")
            return
        try:
            webhook = parse_webhook_url(self.settings.discord_webhook_url.get())
        except WebhookUrlError as exc:
            # Changes are still queued: once the URL is fixed, they are delivered.
            self.disabled_reason = str(exc)
            self.metrics.discord_webhook_enabled.set(0)
            logger.error("%s: Discord notifications are disabled", exc)
            return
        self.metrics.discord_webhook_enabled.set(1)
        logger.info(
            "Discord notifications to %s (pasted as API v%d; posted on v10, wait=true)",
            webhook.redacted,
            webhook.pasted_version,
        )
        self.client = WebhookClient(webhook, self.settings, self.metrics)
        self.client.open()

    async def on_shutdown(self) -> None:
        # Not on_stop: mode calls that before it cancels the sender task, so closing the session
        # there cut a post in flight, which Discord had taken, into a network error; its rows went
        # back to 'pending' and were posted again after the restart (found by
        # tests/integration/test_faults_crash.py). By now _attempt has let that post finish.
        self._release_lock()
        if self.client is not None:
            await self.client.close()

    # ------------------------------------------------------------------ queueing (any worker)

    async def enqueue(self, events: Sequence[PriceChange]) -> int:
        """Record every change in the ledger (pending or skipped); returns how many were new.

        Returns only once the rows are committed: the caller acks the Kafka offsets after it.
        """
        if not self.settings.discord_enabled or not events:
            return 0
        now = ledger.utcnow()
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
        result = await self.database.write_batch(LEDGER, rows, ledger.queue_rows)
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
        if self.client is None:
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
        self._release_lock()

    async def _hold_lock(self) -> bool:
        """Whether this worker is the sender; tries to become it when nobody is."""
        if self.lock.taken:
            if await self.lock.still_held():
                if not self._taken_over:  # a first attempt failed half-way: finish it
                    await self._take_over()
                return self.enabled
            self._release_lock()
        if not await self.lock.acquire():
            return False
        self.leader = True
        self._taken_over = False
        logger.info("This worker is now the Discord sender")
        await self._take_over()
        return self.enabled

    def _release_lock(self) -> None:
        self.lock.release()
        self.leader = False

    async def _take_over(self) -> None:
        """New sender: settle rows left in flight, resume every window, check the hook."""
        client = self.client
        assert client is not None
        await self._check_disabled()
        resend = self.settings.discord_resend_uncertain
        target = PENDING if resend else UNCERTAIN
        detail = "was in flight when its worker stopped" + ("; re-sent" if resend else "")
        period = client.window.period
        webhook_id = client.webhook.webhook_id

        async def settle(
            cur: Any,
        ) -> tuple[int, list[float], str | None, list[tuple[str, str, float]]]:
            moved = await ledger.settle_in_flight(cur, target, detail)
            ages = await ledger.recent_message_ages(cur, period)
            channel_id, waits = await ledger.open_windows(cur, webhook_id)
            return moved, ages, channel_id, waits

        moved, ages, channel_id, waits = await self.database.transaction(LEDGER, settle)
        self._taken_over = True
        if channel_id and client.channel_id is None:
            client.channel_id = channel_id
        # A 429 or a ban the previous sender got is still Discord's: a restart must not skip it.
        client.honour(waits, time.monotonic())
        for scope, reason, seconds in waits:
            logger.warning(
                "Discord: a %s wait (%s) from before this sender took over has %.1f s left;"
                " no request before it ends",
                scope,
                reason,
                seconds,
            )
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
            client.window.record(now - max(age, 0.0))

    async def _check_disabled(self) -> None:
        """Whether this webhook was found deleted or unauthorised before (by any worker)."""
        if self.client is None or self.disabled_reason:
            return
        webhook = self.client.webhook

        async def read(cur: Any) -> tuple[str, Any] | None:
            return await ledger.disabled_webhook(cur, webhook.key)

        row = await self.database.transaction(LEDGER, read)
        if row:
            reason, at = row
            self.disabled_reason = f"{reason} (since {at:%Y-%m-%d %H:%M} UTC)"
            self.metrics.discord_webhook_enabled.set(0)
            logger.error(
                "Discord webhook %s was disabled: %s; not calling it until DISCORD_WEBHOOK_URL"
                " changes; changes stay queued in discord_deliveries",
                webhook.redacted,
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
        counts = await self.database.transaction(LEDGER, ledger.backlog)
        pending = counts.get(PENDING, (0, 0))
        self.metrics.queue_size.labels("discord_pending").set(pending[0])
        self.metrics.queue_size.labels("discord_uncertain").set(counts.get(UNCERTAIN, (0, 0))[0])
        return pending

    async def _load_pending(self) -> list[AppChanges]:
        async def read(cur: Any) -> list[tuple[str, str | None]]:
            return await ledger.oldest_pending(cur, FETCH_ROWS)

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
        if not events:
            return []
        events, hold = await self._with_end_dates(events)
        if hold:
            return []
        names = await self._names({e.app_id for e in events})
        return group_by_app(events, names)

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
        assert self.client is not None
        outcome = await self.client.post(body)
        if outcome.action == "sent":
            await self._set(
                ids,
                SENT,
                message_id=outcome.message_id,
                detail="digest" if digest else None,
                with_windows=True,
            )
            self.metrics.discord_deliveries.labels(SENT).inc(len(ids))
            self.metrics.discord_messages.labels("digest" if digest else "embeds").inc()
            return outcome
        # Not posted (or refused): the rows go back to the queue before any wait, in the same
        # commit as the window the answer opened (a sender killed now leaves both behind).
        self.client.react(outcome)
        if outcome.action == "disable":
            self._disable(outcome.detail)
        await self._set(ids, PENDING, only_from=SENDING, with_windows=True)
        if outcome.action == "disable":
            await self._remember_disabled()
        return outcome

    async def _wait_turn(self) -> None:
        """Sleep until the bucket, any 429 pause and the channel window all allow a message."""
        assert self.client is not None
        while not self.should_stop:
            wait = self.client.delay(time.monotonic())
            if wait <= 0:
                return
            await self.sleep(wait)

    async def _remember_disabled(self) -> None:
        """Persist the disabled state, so that no worker calls this webhook again."""
        assert self.client is not None
        webhook, reason = self.client.webhook, self.disabled_reason[:255]

        async def work(cur: Any) -> None:
            await ledger.disable_webhook(cur, webhook.key, webhook.webhook_id, reason)

        await self.database.transaction(LEDGER, work)

    def _disable(self, detail: str) -> None:
        assert self.client is not None
        self.disabled_reason = detail
        self.metrics.discord_webhook_enabled.set(0)
        self.metrics.discord_deliveries.labels("disabled").inc()
        logger.error(
            "Discord webhook %s disabled (%s): no more calls until DISCORD_WEBHOOK_URL changes;"
            " changes stay queued in discord_deliveries",
            self.client.webhook.redacted,
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
        with_windows: bool = False,
    ) -> bool:
        """Move ledger rows to ``status``; with ``only_from``, True only if all of them moved.

        ``with_windows``: store, in the same transaction, the rate-limit windows and the channel
        the webhook client learnt since the last store.
        """
        if not ids:
            return True
        client = self.client
        windows = client.unsaved() if with_windows and client is not None else []
        learned = with_windows and client is not None and client.channel_learned
        channel_id = client.channel_id if learned and client is not None else None

        async def work(cur: Any) -> int:
            moved = await ledger.move(
                cur, ids, status, only_from=only_from, message_id=message_id, detail=detail
            )
            if client is not None and (windows or channel_id):
                await ledger.store_windows(
                    cur, windows, time.monotonic(), client.webhook.webhook_id, channel_id
                )
            return moved

        moved = await self.database.transaction(LEDGER, work)
        if client is not None and (windows or channel_id):
            client.saved(windows)
            if channel_id == client.channel_id:
                client.channel_learned = False
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
