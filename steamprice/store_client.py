"""The Steam store HTTP client: one paced, backing-off session per worker process."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence

import aiohttp
from mode import Service

from steamprice.metrics import Metrics
from steamprice.settings import Settings
from steamprice.steam import USER_AGENT, StoreError, appdetails_params, split_appdetails

logger = logging.getLogger(__name__)

ENDPOINT = "appdetails"
# After a 403 "Access Denied" page Steam keeps an IP out for minutes to an hour.
BAN_PAUSE_SECONDS = 900.0
MAX_BACKOFF_SECONDS = 900.0
# Transient failures (5xx, timeouts, truncated bodies) of one request before giving up on it.
MAX_ATTEMPTS = 4


class Pacer:
    """Spreads request starts evenly (no bursts) and holds every request during a pause."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - time.monotonic())

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        """Wait for the next free slot; re-checks after waking, since a pause may have begun."""
        async with self._lock:
            while True:
                now = time.monotonic()
                ready_at = max(self._next_slot, self._paused_until)
                if now >= ready_at:
                    self._next_slot = now + self.interval
                    return
                await asyncio.sleep(ready_at - now)


class StoreClient(Service):
    """Prices batches of apps in one region, within Steam's per-IP limits."""

    def __init__(self, settings: Settings, metrics: Metrics, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.metrics = metrics
        self.pacer = Pacer(settings.steam_max_requests_per_minute)
        self._session: aiohttp.ClientSession | None = None
        self._rate_limit_streak = 0
        self._ban_streak = 0

    async def on_start(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=self.settings.steam_request_timeout_seconds),
        )

    async def on_stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, params: dict[str, str]) -> tuple[int, bytes]:
        assert self._session is not None, "StoreClient used before start"
        await self.pacer.acquire()
        url = f"{self.settings.steam_store_url}/api/appdetails"
        started = time.monotonic()
        try:
            async with self._session.get(url, params=params) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            self.metrics.api_requests.labels(ENDPOINT, "timeout").inc()
            raise StoreError("timeout", "request timed out") from None
        except aiohttp.ClientError as exc:
            self.metrics.api_requests.labels(ENDPOINT, "network").inc()
            raise StoreError("network", exc.__class__.__name__) from None
        finally:
            self.metrics.api_response_seconds.labels(ENDPOINT).observe(time.monotonic() - started)
        self.metrics.api_requests.labels(ENDPOINT, str(status)).inc()
        return status, body

    def _pause(self, kind: str) -> None:
        if kind == "banned":
            self._ban_streak += 1
            seconds = min(BAN_PAUSE_SECONDS * 2 ** (self._ban_streak - 1), 4 * BAN_PAUSE_SECONDS)
        else:
            self._rate_limit_streak += 1
            base = self.settings.steam_backoff_seconds * 2 ** (self._rate_limit_streak - 1)
            seconds = min(base, MAX_BACKOFF_SECONDS) * random.uniform(1.0, 1.25)
        self.pacer.pause(seconds)
        self.metrics.rate_limit_pauses.labels(ENDPOINT, kind).inc()
        self.metrics.rate_limit_pause_seconds.labels(ENDPOINT).inc(seconds)
        logger.warning(
            "Steam store answered %s: pausing every store request for %.0f s",
            "403 Access Denied" if kind == "banned" else "429",
            seconds,
        )

    async def fetch_batch(self, app_ids: Sequence[int], cc: str) -> dict[int, str]:
        """Each app's raw ``appdetails`` entry for region ``cc``.

        Rate limits and bans pause and retry for as long as it takes (the worker is no use
        without the store); other failures are retried ``MAX_ATTEMPTS`` times, then raised.
        A batch refused with 400 falls back to one request per app.
        """
        attempts = 0
        while True:
            try:
                status, body = await self._get(appdetails_params(app_ids, cc))
                entries = split_appdetails(status, body, app_ids)
            except StoreError as exc:
                if exc.kind in ("rate_limited", "banned"):
                    self._pause(exc.kind)
                    continue
                if exc.kind == "bad_batch" and len(app_ids) > 1:
                    self.metrics.games_processed.labels("crawl", "batch_refused").inc(len(app_ids))
                    logger.warning(
                        "Batch of %d apps refused (400): falling back to single requests",
                        len(app_ids),
                    )
                    return await self._fetch_singly(app_ids, cc)
                attempts += 1
                if not exc.retryable or attempts >= MAX_ATTEMPTS:
                    raise
                delay = min(2.0**attempts, 60.0) * random.uniform(0.5, 1.0)
                logger.info("Store request failed (%s), retry %d in %.1f s", exc, attempts, delay)
                await asyncio.sleep(delay)
                continue
            self._rate_limit_streak = 0
            self._ban_streak = 0
            self.metrics.last_success.labels(ENDPOINT).set(time.time())
            return entries

    async def _fetch_singly(self, app_ids: Sequence[int], cc: str) -> dict[int, str]:
        entries: dict[int, str] = {}
        for app_id in app_ids:
            try:
                entries.update(await self.fetch_batch([app_id], cc))
            except StoreError as exc:
                logger.warning("App %d in %s cannot be priced: %s", app_id, cc, exc)
        return entries
