"""HTTP to Steam and SteamSpy: one session per worker, each host paced within its limits.

Store ``appdetails`` (per IP: about 200 requests per 5 minutes; 429 ``null`` without
Retry-After when over it; a 403 "Access Denied" page for hammering IPs):

* requests start no closer than ``60 / STEAM_MAX_REQUESTS_PER_MINUTE`` seconds apart, also after
  idling (no catch-up bursts);
* a 429 pauses every store request for ``STEAM_BACKOFF_SECONDS``, doubling with jitter on
  repeats and reset by the next success; a 403 pauses ``STEAM_BAN_PAUSE_SECONDS`` (doubling, at
  most 4x) and raises ``steam_store_banned``. Nothing leaves while paused: the pacer holds every
  caller, and re-checks after waking since a pause may begin while it sleeps;
* 5xx, timeouts, network errors and truncated or non-JSON bodies are retried with exponential
  backoff, ``MAX_ATTEMPTS`` in all; the status is checked before the body is trusted;
* a batch refused with 400 ``null`` (Valve has switched batching off before) is priced one app
  per request, and so are the following batches for ``SINGLES_PROBE_SECONDS`` before batching is
  tried again; a batch whose JSON object is persistently broken is bisected to isolate the
  offending app, so one bad entry costs one app, not a hundred.

Web API ``IStoreBrowseService/GetItems`` (discount end dates; another host, no key, limits
undocumented) has a pace and pauses of its own, so its trouble never holds up pricing:

* requests start no closer than ``60 / STEAM_GETITEMS_MAX_REQUESTS_PER_MINUTE`` seconds apart;
  each carries as many apps as an 8,000-character URL holds (at most 250, Valve's own batch);
* a 429, or an ``x-eresult`` header of 25 or 84, pauses GetItems (only) like a store 429; a 403
  pauses it like a store 403 but leaves ``steam_store_banned`` alone (the store still answers);
* 5xx, timeouts and bad bodies are retried like the store's; a 400 on a batch (a URL over
  Valve's limit) halves it, and the batches of the next ``ITEMS_URL_PROBE_SECONDS`` are packed
  no longer than the halves before the full length is tried again.

SteamSpy is paced to one request per ``STEAMSPY_INTERVAL_SECONDS`` (its limit is 1/s) and the Web
API's ``GetAppList`` is not paced (it has a daily key quota, not a per-IP rate).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import yarl
from mode import Service

from steamprice.enddates import (
    MAX_URL_CHARS,
    MIN_URL_CHARS,
    REQUEST_FAILED,
    EndDate,
    Offer,
    end_dates,
    getitems_url,
    pack,
    split_getitems,
)
from steamprice.metrics import Metrics
from steamprice.settings import Settings
from steamprice.steam import (
    USER_AGENT,
    AppListPage,
    StoreError,
    appdetails_params,
    parse_app_list,
    split_appdetails,
)
from steamprice.steamspy import SpyDetails, SpyError, parse_details

logger = logging.getLogger(__name__)

T = TypeVar("T")

ENDPOINT = "appdetails"
GETITEMS = "getitems"
MAX_BACKOFF_SECONDS = 900.0
MAX_RETRY_DELAY_SECONDS = 60.0
# Attempts of one request that fails transiently (5xx, timeout, bad body) before giving up.
MAX_ATTEMPTS = 4
# While bisecting a broken batch the fault is known to persist: fewer attempts per half.
ISOLATE_ATTEMPTS = 2
# After a 400 on a batch, batches go out one app per request this long, then batching is
# probed again (one wasted request per probe instead of one per batch).
SINGLES_PROBE_SECONDS = 600.0
# A GetItems URL limit lowered after a 400 holds this long, then the full length is tried again
# (a 400 for another reason must not shrink every later batch for good).
ITEMS_URL_PROBE_SECONDS = 3600.0
# SteamSpy allows 1 request per second; 5 % of margin absorbs jitter in arrival times.
STEAMSPY_INTERVAL_SECONDS = 1.05
# SteamSpy's answer to a too-fast client is undocumented; a minute's pause is a polite guess.
STEAMSPY_PAUSE_SECONDS = 60.0


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
                    # From now, not from the missed slot: an idle pacer never bursts to catch up.
                    self._next_slot = now + self.interval
                    return
                await asyncio.sleep(ready_at - now)


def pause_seconds(kind: str, streak: int, backoff: float, ban_pause: float) -> float:
    """How long the ``streak``-th 429 (``rate_limited``) or 403 (``banned``) in a row pauses.

    A 429 doubles from ``backoff`` with up to 25 % jitter (capped at ``MAX_BACKOFF_SECONDS``); a
    403 doubles from ``ban_pause``, at most 4x.
    """
    if kind == "banned":
        return float(min(ban_pause * 2 ** (streak - 1), 4 * ban_pause))
    base = backoff * 2 ** (streak - 1)
    return float(min(base, MAX_BACKOFF_SECONDS) * random.uniform(1.0, 1.25))


@dataclass
class Pauses:
    """One endpoint's 429 and 403 pauses: streaks, its pacer held, each pause counted and logged.

    The store and GetItems each have one, so that GetItems' trouble never holds up pricing.
    """

    endpoint: str
    pacer: Pacer
    settings: Settings
    metrics: Metrics
    # The log lines: "<name> answered <answer>: pausing <scope> for N s".
    name: str
    scope: str
    # How each kind of answer is named in the log; the error's own detail if not listed.
    answers: Mapping[str, str] = field(default_factory=dict)
    # Whether a 403 raises ``steam_store_banned`` (the store's; GetItems' 403 leaves it alone).
    ban_alert: bool = False
    rate_limit_streak: int = 0
    ban_streak: int = 0

    def pause(self, exc: StoreError) -> None:
        """Hold the pacer after a 429 (``rate_limited``) or 403 (``banned``), longer on repeats."""
        if exc.kind == "banned":
            self.ban_streak += 1
            streak = self.ban_streak
            if self.ban_alert:
                self.metrics.store_banned.set(1)
        else:
            self.rate_limit_streak += 1
            streak = self.rate_limit_streak
        seconds = pause_seconds(
            exc.kind,
            streak,
            self.settings.steam_backoff_seconds,
            self.settings.steam_ban_pause_seconds,
        )
        self.pacer.pause(seconds)
        self.metrics.rate_limit_pauses.labels(self.endpoint, exc.kind).inc()
        self.metrics.rate_limit_pause_seconds.labels(self.endpoint).inc(seconds)
        logger.warning(
            "%s answered %s: pausing %s for %.0f s",
            self.name,
            self.answers.get(exc.kind, exc.detail),
            self.scope,
            seconds,
        )

    def answered(self) -> None:
        """A success: the streaks start again."""
        self.rate_limit_streak = 0
        if self.ban_streak:
            logger.info("%s answers again after a 403 pause", self.name)
        self.ban_streak = 0
        if self.ban_alert:
            self.metrics.store_banned.set(0)
        self.metrics.last_success.labels(self.endpoint).set(time.time())


@dataclass
class ItemsResult:
    """GetItems' item for each app that got one (any JSON value), or why the batch failed."""

    items: dict[int, Any] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


@dataclass
class FetchResult:
    """One region's answer for a batch: each app's raw entry, or why it has none."""

    entries: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


class StoreClient(Service):
    """Prices batches of apps in one region within Steam's per-IP limits; also SteamSpy."""

    def __init__(self, settings: Settings, metrics: Metrics, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.metrics = metrics
        self.pacer = Pacer(settings.steam_max_requests_per_minute)
        self.spy_pacer = Pacer(60.0 / STEAMSPY_INTERVAL_SECONDS)
        self._session: aiohttp.ClientSession | None = None
        self._pauses = Pauses(
            ENDPOINT,
            self.pacer,
            settings,
            metrics,
            name="Steam store",
            scope="every store request",
            answers={"banned": "403 Access Denied", "rate_limited": "429"},
            ban_alert=True,
        )
        self._singles_until = 0.0
        # GetItems: its own pace, pauses and URL limit (lowered if Valve refuses a long URL).
        self.items_pacer = Pacer(settings.steam_getitems_max_requests_per_minute or 1.0)
        self._items_pauses = Pauses(
            GETITEMS,
            self.items_pacer,
            settings,
            metrics,
            name="GetItems",
            scope="GetItems (end dates only)",
        )
        self.items_url_limit = MAX_URL_CHARS
        self._items_url_limit_until = 0.0

    async def on_start(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            # No cookies: Steam's store sets some (age gates, sessions); none are wanted back.
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=self.settings.steam_request_timeout_seconds),
        )

    async def on_stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(
        self, url: str, params: Mapping[str, str], endpoint: str, pacer: Pacer | None
    ) -> tuple[int, bytes]:
        status, body, _ = await self._send(url, params, endpoint, pacer)
        return status, body

    async def _send(
        self,
        url: str | yarl.URL,
        params: Mapping[str, str] | None,
        endpoint: str,
        pacer: Pacer | None,
    ) -> tuple[int, bytes, str | None]:
        """One paced GET: status, body and the Web API's ``x-eresult`` header (if any)."""
        assert self._session is not None, "StoreClient used before start"
        if pacer is not None:
            await pacer.acquire()
        started = time.monotonic()
        try:
            async with self._session.get(url, params=params) as resp:
                body = await resp.read()
                status = resp.status
                eresult = resp.headers.get("x-eresult")
        except TimeoutError:
            self.metrics.api_requests.labels(endpoint, "timeout").inc()
            raise StoreError("timeout", "request timed out") from None
        except aiohttp.ClientError as exc:
            # Only the class name: aiohttp's messages can hold the URL, and the Web API's
            # URL holds the key.
            self.metrics.api_requests.labels(endpoint, "network").inc()
            raise StoreError("network", exc.__class__.__name__) from None
        finally:
            self.metrics.api_response_seconds.labels(endpoint).observe(time.monotonic() - started)
        self.metrics.api_requests.labels(endpoint, str(status)).inc()
        return status, body, eresult

    def _retry_delay(self, attempt: int) -> float:
        base = self.settings.steam_retry_base_seconds * 2 ** (attempt - 1)
        return float(min(base, MAX_RETRY_DELAY_SECONDS) * random.uniform(1.0, 1.5))

    async def _with_retries(
        self,
        send: Callable[[], Awaitable[T]],
        pauses: Pauses,
        what: str,
        attempts_allowed: int = MAX_ATTEMPTS,
        wait_out_pauses: bool = True,
    ) -> T:
        """``send``'s answer, with pauses and retries; raises StoreError when it gives up.

        429 and 403 pause ``pauses``' endpoint and retry for as long as it takes, or raise at
        once without ``wait_out_pauses``; other failures are retried ``attempts_allowed`` times
        in all.
        """
        attempts = 0
        while True:
            try:
                answer = await send()
            except StoreError as exc:
                if exc.kind in ("rate_limited", "banned"):
                    pauses.pause(exc)
                    if not wait_out_pauses:
                        raise
                    continue
                attempts += 1
                if not exc.retryable or attempts >= attempts_allowed:
                    raise
                delay = self._retry_delay(attempts)
                logger.info("%s failed (%s), retry %d in %.1f s", what, exc, attempts, delay)
                await asyncio.sleep(delay)
                continue
            pauses.answered()
            return answer

    # -------------------------------------------------------------- store appdetails

    async def _request(
        self, app_ids: Sequence[int], cc: str, attempts_allowed: int = MAX_ATTEMPTS
    ) -> dict[int, str]:
        """One ``appdetails`` call with pauses and retries; raises StoreError when it gives up.

        429 and 403 pause and retry for as long as it takes (the worker is no use without the
        store); other failures are retried ``attempts_allowed`` times in all.
        """
        url = f"{self.settings.steam_store_url}/api/appdetails"
        params = appdetails_params(app_ids, cc)

        async def send() -> dict[int, str]:
            status, body = await self._get(url, params, ENDPOINT, self.pacer)
            return split_appdetails(status, body, app_ids)

        return await self._with_retries(send, self._pauses, "Store request", attempts_allowed)

    async def fetch_batch(self, app_ids: Sequence[int], cc: str) -> FetchResult:
        """Every app's raw ``appdetails`` entry for region ``cc``, or the reason it has none.

        Never raises a StoreError: an app that cannot be priced is in ``errors``.
        """
        ids = list(dict.fromkeys(app_ids))
        if len(ids) > 1 and time.monotonic() < self._singles_until:
            return await self._fetch_singly(ids, cc)
        try:
            return FetchResult(entries=await self._request(ids, cc))
        except StoreError as exc:
            if len(ids) > 1 and exc.kind == "bad_batch":
                self._singles_until = time.monotonic() + SINGLES_PROBE_SECONDS
                self.metrics.batch_fallbacks.labels("refused").inc()
                logger.warning(
                    "Batch of %d apps refused (400): one app per request for the next %.0f s",
                    len(ids),
                    SINGLES_PROBE_SECONDS,
                )
                return await self._fetch_singly(ids, cc)
            if len(ids) > 1 and exc.kind == "malformed" and exc.broken_object:
                self.metrics.batch_fallbacks.labels("isolate").inc()
                logger.warning(
                    "Batch of %d apps in %s keeps answering broken JSON (%s): bisecting",
                    len(ids),
                    cc,
                    exc,
                )
                return await self._isolate(ids, cc, exc)
            logger.warning("Pricing %d apps in %s failed: %s", len(ids), cc, exc)
            return FetchResult(errors=dict.fromkeys(ids, f"{cc}: {exc}"))

    async def _fetch_singly(self, app_ids: Sequence[int], cc: str) -> FetchResult:
        result = FetchResult()
        for app_id in app_ids:
            try:
                result.entries.update(await self._request([app_id], cc))
            except StoreError as exc:
                logger.warning("App %d in %s cannot be priced: %s", app_id, cc, exc)
                result.errors[app_id] = f"{cc}: {exc}"
        return result

    async def _isolate(self, app_ids: list[int], cc: str, exc: StoreError) -> FetchResult:
        """Halve the batch while exactly one half keeps failing, down to the one bad app.

        If both halves fail, the fault is not one entry: give up on all of them rather than
        explode into ever smaller requests.
        """
        result = FetchResult()
        suspects = app_ids
        while len(suspects) > 1:
            mid = len(suspects) // 2
            failed: list[tuple[list[int], StoreError]] = []
            for half in (suspects[:mid], suspects[mid:]):
                try:
                    result.entries.update(await self._request(half, cc, ISOLATE_ATTEMPTS))
                except StoreError as half_exc:
                    failed.append((half, half_exc))
            if not failed:
                return result  # the fault went away
            if len(failed) == 2 or not failed[0][1].broken_object:
                for half, error in failed:
                    result.errors.update(dict.fromkeys(half, f"{cc}: {error}"))
                return result
            suspects, exc = failed[0]
        logger.warning("App %d in %s breaks its batch's JSON: %s", suspects[0], cc, exc)
        result.errors[suspects[0]] = f"{cc}: entry breaks the JSON answer ({exc})"
        return result

    # -------------------------------------------------------------- Web API GetItems

    async def discount_ends(
        self, offers: Sequence[Offer], cc: str, *, wait_out_pauses: bool = True
    ) -> list[EndDate]:
        """When each offer's discount ends in region ``cc``: one :class:`EndDate` per offer.

        Never raises a StoreError: a batch GetItems gives no usable answer for is
        ``request_failed``. Every outcome is counted in
        ``steam_games_processed_total{task="enddate",status=<outcome>}``. Without
        ``wait_out_pauses``, a 429 or 403 still pauses GetItems but ends the call at once (the
        rest ``request_failed``), so that a caller with a queue can say the apps wait.
        """
        unique = list({o.app_id: o for o in offers}.values())
        fetched = await self.get_items(
            [o.app_id for o in unique], cc, wait_out_pauses=wait_out_pauses
        )
        now = datetime.now(UTC)
        answered = [o for o in unique if o.app_id not in fetched.errors]
        results = end_dates(fetched.items, answered, now)
        results += [
            EndDate(o.app_id, REQUEST_FAILED, detail=fetched.errors[o.app_id])
            for o in unique
            if o.app_id in fetched.errors
        ]
        for result in results:
            self.metrics.games_processed.labels("enddate", result.outcome).inc()
        return results

    async def get_items(
        self, app_ids: Sequence[int], cc: str, *, wait_out_pauses: bool = True
    ) -> ItemsResult:
        """GetItems' item for each app in region ``cc``, in batches as large as the URL allows.

        An app absent from both ``items`` and ``errors`` got no item back (Steam left it out).
        """
        result = ItemsResult()
        ids = list(dict.fromkeys(app_ids))
        if not self.settings.steam_getitems_max_requests_per_minute:
            result.errors.update(dict.fromkeys(ids, "GetItems is switched off"))
            return result
        if self.items_url_limit < MAX_URL_CHARS and time.monotonic() >= self._items_url_limit_until:
            self.items_url_limit = MAX_URL_CHARS
        for batch in pack(self.settings.steam_api_url, ids, cc, self.items_url_limit):
            if not wait_out_pauses and self.items_pacer.paused_for > 0:
                result.errors.update(dict.fromkeys(batch, f"{cc}: GetItems is paused"))
                continue
            await self._items_batch(batch, cc, result, wait_out_pauses)
        return result

    async def _items_batch(
        self, batch: list[int], cc: str, result: ItemsResult, wait_out_pauses: bool = True
    ) -> None:
        url = getitems_url(self.settings.steam_api_url, batch, cc)
        try:
            result.items.update(await self._items_request(url, batch, wait_out_pauses))
        except StoreError as exc:
            if exc.kind == "bad_batch" and len(batch) > 1 and len(str(url)) > MIN_URL_CHARS:
                # Valve's URL limit is lower than the doc's line, or moved: halve, and pack the
                # batches that follow no longer than the halves (lowered again if they fail).
                # Down to short URLs only: a 400 for another reason wastes a few requests, not
                # one per app.
                mid = len(batch) // 2
                halves = (batch[:mid], batch[mid:])
                longest = max(
                    len(str(getitems_url(self.settings.steam_api_url, h, cc))) for h in halves
                )
                self.items_url_limit = max(MIN_URL_CHARS, min(self.items_url_limit, longest))
                self._items_url_limit_until = time.monotonic() + ITEMS_URL_PROBE_SECONDS
                self.metrics.batch_fallbacks.labels("getitems_split").inc()
                logger.warning(
                    "GetItems refused %d apps in a %d-character URL (400): halving, URLs kept"
                    " under %d characters from now on",
                    len(batch),
                    len(str(url)),
                    self.items_url_limit,
                )
                for half in halves:
                    await self._items_batch(half, cc, result, wait_out_pauses)
                return
            logger.warning("GetItems for %d apps in %s failed: %s", len(batch), cc, exc)
            result.errors.update(dict.fromkeys(batch, f"{cc}: {exc}"))

    async def _items_request(
        self, url: yarl.URL, batch: Sequence[int], wait_out_pauses: bool = True
    ) -> dict[int, Any]:
        """One GetItems call with its own pauses and retries; raises StoreError when it gives up.

        Like ``appdetails``: 429/403 pause and retry for as long as it takes (only end dates
        wait), or raise at once without ``wait_out_pauses``; other failures are retried
        ``MAX_ATTEMPTS`` times in all.
        """
        self.metrics.batch_size.labels(GETITEMS).observe(len(batch))

        async def send() -> dict[int, Any]:
            status, body, eresult = await self._send(url, None, GETITEMS, self.items_pacer)
            return split_getitems(status, body, eresult, batch)

        return await self._with_retries(
            send, self._items_pauses, "GetItems", wait_out_pauses=wait_out_pauses
        )

    # -------------------------------------------------------------- Web API app list

    async def app_list_page(self, params: Mapping[str, str]) -> AppListPage:
        """One ``IStoreService/GetAppList/v1`` page; 5xx and bad bodies are retried.

        A 403 means a missing or wrong key and is raised at once (retrying will not help).
        """
        url = f"{self.settings.steam_api_url}/IStoreService/GetAppList/v1/"
        attempts = 0
        while True:
            try:
                status, body = await self._get(url, params, "applist", None)
                page = parse_app_list(status, body)
            except StoreError as exc:
                attempts += 1
                if not exc.retryable or attempts >= MAX_ATTEMPTS:
                    raise
                await asyncio.sleep(self._retry_delay(attempts))
                continue
            self.metrics.last_success.labels("applist").set(time.time())
            return page

    # -------------------------------------------------------------- SteamSpy

    async def steamspy_details(self, app_id: int) -> SpyDetails:
        """SteamSpy ``appdetails`` of one app, at most one request per second.

        A 429 pauses SteamSpy requests (only) and retries; other failures are retried
        ``MAX_ATTEMPTS`` times in all, then raised as StoreError.
        """
        params = {"request": "appdetails", "appid": str(app_id)}
        attempts = 0
        while True:
            try:
                status, body = await self._get(
                    self.settings.steamspy_url, params, "steamspy", self.spy_pacer
                )
                if status == 429:
                    self.spy_pacer.pause(STEAMSPY_PAUSE_SECONDS)
                    self.metrics.rate_limit_pauses.labels("steamspy", "rate_limited").inc()
                    logger.warning(
                        "SteamSpy answered 429: pausing it %.0f s", STEAMSPY_PAUSE_SECONDS
                    )
                    continue
                if status >= 500:
                    raise StoreError("server", f"HTTP {status}", status)
                if status != 200:
                    raise StoreError("http", f"HTTP {status}", status)
                try:
                    details = parse_details(app_id, body)
                except SpyError as spy_exc:
                    raise StoreError("malformed", str(spy_exc), status) from None
            except StoreError as exc:
                attempts += 1
                if not exc.retryable or attempts >= MAX_ATTEMPTS:
                    raise
                await asyncio.sleep(self._retry_delay(attempts))
                continue
            self.metrics.last_success.labels("steamspy").set(time.time())
            return details
