"""The Discord notifier service: posts embeds through one webhook within its rate limits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import aiohttp
from mode import Service

from steamprice.database import Database
from steamprice.discord import (
    Webhook,
    build_embed,
    classify_response,
    pack_messages,
    parse_webhook_url,
    payload,
)
from steamprice.metrics import Metrics
from steamprice.models import PriceChange
from steamprice.settings import Settings

logger = logging.getLogger(__name__)

ENDPOINT = "discord"
# Discord's hidden per-channel limit is ~30 messages a minute: stay under it by pacing.
DEFAULT_MESSAGE_INTERVAL = 2.1
CLOUDFLARE_PAUSE_SECONDS = 1800.0
MAX_WAIT_SECONDS = 3600.0


RECORD_DELIVERY = (
    "INSERT IGNORE INTO discord_deliveries (event_id, app_id, status, message_id, detail)"
    " VALUES (%s, %s, %s, %s, %s)"
)


class WebhookDisabled(Exception):
    """The webhook was deleted or its token is bad: it is never called again."""


class DiscordNotifier(Service):
    """Delivers price changes to one webhook, each change once (ledger in MySQL)."""

    def __init__(
        self, settings: Settings, metrics: Metrics, database: Database, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.database = database
        self.webhook: Webhook | None = None
        self.disabled_reason = ""
        self._session: aiohttp.ClientSession | None = None
        self._not_before = 0.0  # monotonic time before which no request may leave
        self._last_sent = 0.0
        self.message_interval = DEFAULT_MESSAGE_INTERVAL

    @property
    def enabled(self) -> bool:
        return self.webhook is not None and not self.disabled_reason

    async def on_start(self) -> None:
        if not self.settings.discord_enabled:
            logger.info("Discord notifications are off (no DISCORD_WEBHOOK_URL or ENABLE_DISCORD)")
            return
        self.webhook = parse_webhook_url(self.settings.discord_webhook_url.get())
        self.metrics.discord_webhook_enabled.set(1)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=15), cookie_jar=aiohttp.DummyCookieJar()
        )

    async def on_stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def notify(self, events: Sequence[PriceChange]) -> None:
        """Post every event not yet in the ledger; record each one posted (or rejected)."""
        if not self.enabled or not events:
            return
        pending = await self._undelivered(events)
        if not pending:
            return
        names = await self._names({e.app_id for e in pending})
        by_app: dict[int, list[PriceChange]] = defaultdict(list)
        for e in pending:
            by_app[e.app_id].append(e)
        embeds = [build_embed(a, names.get(a), evs) for a, evs in by_app.items()]
        apps_of_embed = list(by_app)
        index = 0
        for message in pack_messages(embeds):
            apps = apps_of_embed[index : index + len(message)]
            index += len(message)
            try:
                await self._post_isolating(message, [by_app[a] for a in apps])
            except WebhookDisabled:
                return

    async def _post_isolating(
        self, embeds: list[dict[str, Any]], groups: list[list[PriceChange]]
    ) -> None:
        """Post a message; on a 400 split it until the offending embed is alone, then skip it."""
        outcome = await self._post(payload(embeds))
        if outcome.action == "sent":
            await self._record([e for g in groups for e in g], "sent", outcome.message_id, "")
            self.metrics.discord_deliveries.labels("sent").inc(sum(len(g) for g in groups))
            return
        if len(embeds) > 1:
            mid = len(embeds) // 2
            await self._post_isolating(embeds[:mid], groups[:mid])
            await self._post_isolating(embeds[mid:], groups[mid:])
            return
        logger.error(
            "Discord rejected the embed of app %d (%s): skipped",
            groups[0][0].app_id,
            outcome.detail,
        )
        self.metrics.discord_deliveries.labels("rejected").inc(len(groups[0]))
        await self._record(groups[0], "rejected", None, outcome.detail)

    async def _post(self, body: dict[str, Any]) -> Any:
        """Send one payload until it is accepted, rejected, or the webhook is disabled."""
        assert self._session is not None and self.webhook is not None
        backoff = 1.0
        while True:
            wait = max(self._not_before, self._last_sent + self.message_interval) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            started = time.monotonic()
            try:
                async with self._session.post(self.webhook.url, json=body) as resp:
                    raw = await resp.read()
                    status, headers = resp.status, dict(resp.headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.metrics.api_requests.labels(ENDPOINT, "network").inc()
                logger.warning(
                    "Discord request failed (%s); retrying in %.0f s",
                    exc.__class__.__name__,
                    backoff,
                )
                self._not_before = time.monotonic() + backoff
                backoff = min(backoff * 2, 300.0)
                continue
            finally:
                self.metrics.api_response_seconds.labels(ENDPOINT).observe(
                    time.monotonic() - started
                )
            self._last_sent = time.monotonic()
            self.metrics.api_requests.labels(ENDPOINT, str(status)).inc()
            self._obey_headers(headers)
            outcome = classify_response(status, headers, raw, max_wait=MAX_WAIT_SECONDS)
            if outcome.action in ("sent", "reject"):
                if outcome.action == "sent":
                    self.metrics.last_success.labels(ENDPOINT).set(time.time())
                return outcome
            if outcome.action == "retry_after":
                self.metrics.discord_deliveries.labels("rate_limited").inc()
                logger.warning(
                    "Discord 429%s: waiting %.1f s before resending",
                    " (global)" if outcome.global_ else "",
                    outcome.wait,
                )
                self._not_before = time.monotonic() + outcome.wait
                continue
            if outcome.action == "ban":
                self.metrics.discord_deliveries.labels("banned").inc()
                self.metrics.rate_limit_pauses.labels(ENDPOINT, "banned").inc()
                logger.error(
                    "Discord blocked this IP (Cloudflare); pausing %.0f s", CLOUDFLARE_PAUSE_SECONDS
                )
                self._not_before = time.monotonic() + CLOUDFLARE_PAUSE_SECONDS
                continue
            if outcome.action == "disable":
                self.disabled_reason = outcome.detail
                self.metrics.discord_webhook_enabled.set(0)
                self.metrics.discord_deliveries.labels("disabled").inc()
                logger.error(
                    "Discord webhook %s disabled (%s): no more notifications until "
                    "DISCORD_WEBHOOK_URL is fixed; changes stay in MySQL",
                    self.webhook.redacted,
                    outcome.detail,
                )
                raise WebhookDisabled(outcome.detail)
            logger.warning("Discord answered %s; retrying in %.0f s", outcome.detail, backoff)
            self._not_before = time.monotonic() + backoff
            backoff = min(backoff * 2, 300.0)

    def _obey_headers(self, headers: dict[str, str]) -> None:
        """When the bucket is empty, hold the next request until it resets."""
        remaining = headers.get("X-RateLimit-Remaining")
        reset_after = headers.get("X-RateLimit-Reset-After")
        if remaining is None or reset_after is None:
            return
        try:
            if int(float(remaining)) <= 0:
                wait = min(float(reset_after), MAX_WAIT_SECONDS)
                self._not_before = max(self._not_before, time.monotonic() + wait)
        except ValueError:
            pass

    async def _undelivered(self, events: Sequence[PriceChange]) -> list[PriceChange]:
        ids = list({e.event_id for e in events})

        async def work(cur: Any) -> set[str]:
            marks = ", ".join(["%s"] * len(ids))
            await cur.execute(
                f"SELECT event_id FROM discord_deliveries WHERE event_id IN ({marks})", ids
            )
            return {row[0] for row in await cur.fetchall()}

        done = await self.database.transaction("discord_ledger", work)
        seen: set[str] = set()
        pending = []
        for e in events:
            if e.event_id not in done and e.event_id not in seen:
                seen.add(e.event_id)
                pending.append(e)
        return pending

    async def _names(self, app_ids: set[int]) -> dict[int, str]:
        ids = sorted(app_ids)

        async def work(cur: Any) -> dict[int, str]:
            marks = ", ".join(["%s"] * len(ids))
            await cur.execute(
                f"SELECT app_id, name FROM apps WHERE name IS NOT NULL AND app_id IN ({marks})",
                ids,
            )
            return {int(a): str(n) for a, n in await cur.fetchall()}

        return await self.database.transaction("discord_ledger", work)

    async def _record(
        self, events: Sequence[PriceChange], status: str, message_id: str | None, detail: str
    ) -> None:
        rows = [(e.event_id, e.app_id, status, message_id, detail[:255]) for e in events]
        await self.database.write("discord_ledger", [(RECORD_DELIVERY, rows)])
