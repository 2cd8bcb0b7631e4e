"""One Discord webhook: its URL, what each answer means, and a client that obeys every limit.

The rules (URL, answers, the channel window) are pure and read no clock; :class:`WebhookClient`
does the HTTP and keeps the waits they call for: the bucket announced in ``X-RateLimit-*``
headers, a 429's ``retry_after`` (webhook, channel or global), a Cloudflare ban, backoff after
5xx and timeouts, and our count of Discord's hidden per-channel message limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from steamprice.metrics import Metrics
from steamprice.settings import Settings

logger = logging.getLogger(__name__)

ENDPOINT = "discord"
# v6 and v7 report ``retry_after`` in milliseconds; v8 switched to seconds.
FIRST_SECONDS_VERSION = 8
API_VERSION = 10
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 300.0

_WEBHOOK_RE = re.compile(r"^(https?://[^/]+)/api(?:/v(\d+))?/webhooks/(\d+)/([^/?#]+)")


# ---------------------------------------------------------------------- URL


class WebhookUrlError(ValueError):
    """The configured URL is not a Discord webhook URL (the message never contains it)."""


@dataclass(frozen=True, slots=True)
class Webhook:
    base: str
    webhook_id: str
    token: str = field(repr=False)
    # The version the pasted URL named (6 when it had none); requests always use v10.
    pasted_version: int = 6

    @property
    def url(self) -> str:
        """The v10 URL with ``wait=true``: a 200 with the message instead of a silent 204."""
        return f"{self.base}/api/v{API_VERSION}/webhooks/{self.webhook_id}/{self.token}?wait=true"

    @property
    def api_version(self) -> int:
        return API_VERSION

    @property
    def redacted(self) -> str:
        return f"{self.base}/api/v{API_VERSION}/webhooks/{self.webhook_id}/***"

    @property
    def object_url(self) -> str:
        """``GET`` here answers the webhook object (with its ``channel_id``), no auth needed."""
        return f"{self.base}/api/v{API_VERSION}/webhooks/{self.webhook_id}/{self.token}"

    @property
    def key(self) -> str:
        """A stable, non-reversible name of this id + token (to remember a disabled webhook)."""
        return hashlib.sha256(f"{self.webhook_id}/{self.token}".encode()).hexdigest()


def parse_webhook_url(url: str) -> Webhook:
    """Normalise any pasted webhook URL (unversioned means v6, where waits are in ms) to v10."""
    m = _WEBHOOK_RE.match(url.strip())
    if not m:
        raise WebhookUrlError(
            "DISCORD_WEBHOOK_URL is not of the form https://HOST/api/webhooks/ID/TOKEN"
        )
    version = int(m.group(2)) if m.group(2) else 6
    return Webhook(m.group(1), m.group(3), m.group(4), version)


# ---------------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one webhook answer means for the sender.

    ``action``: ``sent``, ``retry_after`` (wait ``wait`` seconds, resend the same payload),
    ``disable`` (webhook gone or token bad: never call again), ``reject`` (the payload is bad;
    isolate the offending embed), ``backoff`` (5xx: retry with backoff), ``ban`` (Cloudflare:
    long pause). ``scope`` of a 429: ``user``, ``shared``, ``global`` or ``cloudflare``.
    ``channel_id``: the channel a ``sent`` message went to (where the channel limit applies).
    """

    action: str
    wait: float = 0.0
    global_: bool = False
    message_id: str | None = None
    detail: str = ""
    scope: str = ""
    capped: bool = False
    channel_id: str | None = None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _seconds(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def classify_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    max_wait: float = 3600.0,
    api_version: int = API_VERSION,
) -> Outcome:
    """The meaning of one webhook answer; 429 waits in seconds (v6/v7 bodies are in ms)."""
    try:
        doc = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    data = doc if isinstance(doc, dict) else {}
    if 200 <= status < 300:
        return Outcome(
            "sent",
            message_id=str(data["id"]) if data.get("id") else None,
            channel_id=str(data["channel_id"]) if data.get("channel_id") else None,
        )
    code = data.get("code")
    if status == 429:
        has_rl_headers = any(h.lower().startswith("x-ratelimit") for h in headers)
        if not has_rl_headers and "retry_after" not in data:
            return Outcome(
                "ban",
                wait=max_wait,
                detail="Cloudflare ban (429 without rate-limit headers)",
                scope="cloudflare",
            )
        wait = _seconds(data.get("retry_after"))
        if wait is not None and api_version < FIRST_SECONDS_VERSION:
            wait /= 1000.0
        if wait is None:
            wait = _seconds(_header(headers, "Retry-After"))
        if wait is None:
            wait = _seconds(_header(headers, "X-RateLimit-Reset-After"))
        if wait is None:
            wait = 1.0
        global_ = bool(data.get("global")) or (_header(headers, "X-RateLimit-Global") == "true")
        scope = _header(headers, "X-RateLimit-Scope") or ("global" if global_ else "user")
        wait = max(wait, 0.0)
        return Outcome(
            "retry_after",
            wait=min(wait, max_wait),
            global_=global_,
            detail=f"429 {scope}",
            scope=scope,
            capped=wait > max_wait,
        )
    if status in (401, 403, 404):
        # 404/10015 (webhook deleted), 401/50027 (bad token), 403 (no permission): every
        # payload would get the same answer.
        return Outcome("disable", detail=f"HTTP {status} code {code}")
    if status == 408 or status >= 500:
        return Outcome("backoff", detail=f"HTTP {status}")
    # 400/50035 and any other 4xx: this payload is refused; never resend it as it is.
    return Outcome("reject", detail=f"HTTP {status} code {code}")


# ---------------------------------------------------------------------- channel window


class MessageWindow:
    """Our side of Discord's hidden per-channel limit: at most ``limit`` messages per ``period``.

    The limit is never announced in headers, so it is counted here. Times are those at which
    an accepted message's answer arrived, which is never before Discord counted it, and a small
    margin covers clock skew: waiting ``delay()`` is always enough.
    """

    def __init__(self, limit: int, period: float, margin: float | None = None) -> None:
        self.limit = limit
        self.period = period
        self.margin = period / 240 if margin is None else margin
        self._sent: deque[float] = deque()
        # A 429 of scope "shared" (the channel's hidden limit) holds every webhook of the channel.
        self.not_before = 0.0

    def _trim(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.period - self.margin:
            self._sent.popleft()

    def delay(self, now: float) -> float:
        """Seconds to wait before the next message may leave."""
        self._trim(now)
        held = self.not_before - now
        if len(self._sent) < self.limit:
            return max(held, 0.0)
        return max(held, self._sent[len(self._sent) - self.limit] + self.period + self.margin - now)

    def record(self, at: float) -> None:
        self._sent.append(at)

    def __len__(self) -> int:
        return len(self._sent)


# ---------------------------------------------------------------------- windows

# What a wait applies to: one webhook (its bucket, a 429 of it), one channel (the hidden
# per-channel limit, shared by every webhook posting there) or every request (a global 429,
# a Cloudflare ban of this IP).
WEBHOOK, CHANNEL, GLOBAL = "webhook", "channel", "global"


@dataclass(frozen=True, slots=True)
class Window:
    """No request to ``scope`` ``key`` before ``until`` (monotonic), because of ``reason``."""

    scope: str
    key: str
    until: float
    reason: str


def window_scope(outcome: Outcome, webhook_id: str, channel_id: str | None) -> tuple[str, str]:
    """(scope, key) a 429 applies to; a channel 429 before the channel is known: the webhook."""
    if outcome.global_ or outcome.scope in ("global", "cloudflare") or outcome.action == "ban":
        return GLOBAL, ""
    if outcome.scope == "shared" and channel_id:
        return CHANNEL, channel_id
    return WEBHOOK, webhook_id


# ---------------------------------------------------------------------- client


class Gate:
    """A pause every webhook of this process obeys: a global 429, a Cloudflare ban of the IP."""

    def __init__(self) -> None:
        self.not_before = 0.0  # monotonic


def new_session(settings: Settings) -> aiohttp.ClientSession:
    """The process's HTTP session for Discord (explicit timeout, no cookies)."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.discord_request_timeout_seconds),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class WebhookClient:
    """Posts to one webhook and keeps the waits Discord asks for.

    Not a service of its own: the notifier gives it the process's HTTP session, the window of
    the channel the webhook posts into (shared by every webhook of that channel) and the gate
    of global pauses, and sleeps (stoppably) for :meth:`delay` before each request.
    Standalone (``alerts test``), :meth:`open` makes a session of its own. Every wait Discord
    asks for is also kept as a :class:`Window` until the notifier has stored it
    (:meth:`unsaved`, :meth:`saved`), and the windows a previous sender stored are honoured
    through :meth:`honour`: a crash forgets none.
    """

    def __init__(
        self,
        webhook: Webhook,
        settings: Settings,
        metrics: Metrics,
        *,
        session: aiohttp.ClientSession | None = None,
        window: MessageWindow | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.webhook = webhook
        self.settings = settings
        self.metrics = metrics
        self.window = window or MessageWindow(
            settings.discord_channel_messages, settings.discord_channel_window_seconds
        )
        self.gate = gate or Gate()
        self._session = session
        self._own_session = False
        self._not_before = 0.0  # monotonic time before which no request may leave
        self._backoff = FIRST_BACKOFF_SECONDS
        # The channel this webhook posts into, from Discord's answers (or a previous sender).
        self.channel_id: str | None = None
        self.channel_learned = False  # a channel id not yet stored
        self._unsaved: dict[tuple[str, str], Window] = {}

    def open(self) -> None:
        self._session = new_session(self.settings)
        self._own_session = True

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def delay(self, now: float) -> float:
        """Seconds until the bucket, any 429 pause and the channel window allow a message."""
        return max(self._not_before - now, self.gate.not_before - now, self.window.delay(now))

    async def _exchange(
        self, request: AbstractAsyncContextManager[aiohttp.ClientResponse]
    ) -> tuple[Outcome, dict[str, str], bytes] | Outcome:
        """Send ``request`` (a session call not yet awaited): the answer classified, its headers
        and body, counted by status. A network error or timeout is a counted ``backoff`` Outcome
        alone (no answer)."""
        try:
            async with request as resp:
                raw = await resp.read()
                # Header names are case-insensitive (HTTP/2 sends them in lower case).
                status = resp.status
                headers = {k.lower(): v for k, v in resp.headers.items()}
        except (aiohttp.ClientError, TimeoutError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else "network"
            self.metrics.api_requests.labels(ENDPOINT, kind).inc()
            # The class name only: aiohttp errors may quote the URL, which holds the token.
            return Outcome("backoff", detail=f"{kind}: {exc.__class__.__name__}")
        self.metrics.api_requests.labels(ENDPOINT, str(status)).inc()
        outcome = classify_response(
            status,
            headers,
            raw,
            max_wait=self.settings.discord_max_retry_wait_seconds,
            api_version=self.webhook.api_version,
        )
        return outcome, headers, raw

    async def fetch_channel(self) -> tuple[str | None, Outcome | None]:
        """``GET`` the webhook object: (its ``channel_id``, None), or (None, the failure).

        A 404/401 is ``disable``. The answer's bucket headers are not applied to the posts'
        pacing (the call is made once per webhook, before its first post).
        """
        assert self._session is not None
        answer = await self._exchange(self._session.get(self.webhook.object_url))
        if isinstance(answer, Outcome):
            return None, answer
        outcome, _, raw = answer
        if outcome.action != "sent":
            return None, outcome
        try:
            channel = json.loads(raw).get("channel_id")
        except (ValueError, AttributeError):
            channel = None
        if not isinstance(channel, str) or not channel.isdigit():
            return None, Outcome("backoff", detail="webhook object without a channel_id")
        return channel, None

    async def post(self, body: dict[str, Any]) -> Outcome:
        """One request; a network error or timeout is an Outcome too (``backoff``)."""
        assert self._session is not None
        started = time.monotonic()
        try:
            answer = await self._exchange(self._session.post(self.webhook.url, json=body))
        finally:
            self.metrics.api_response_seconds.labels(ENDPOINT).observe(time.monotonic() - started)
        if isinstance(answer, Outcome):
            return answer
        received = time.monotonic()
        outcome, headers, _ = answer
        self._obey_headers(headers, received)
        if outcome.action == "sent":
            self._backoff = FIRST_BACKOFF_SECONDS
            self.window.record(received)
            self.metrics.last_success.labels(ENDPOINT).set(time.time())
            if outcome.channel_id and outcome.channel_id != self.channel_id:
                self.channel_id, self.channel_learned = outcome.channel_id, True
        return outcome

    def react(self, outcome: Outcome) -> None:
        """Set the pause an answer that was not ``sent`` asks for (``disable`` is the caller's)."""
        now = time.monotonic()
        if outcome.action == "retry_after":
            self.metrics.discord_rate_limited.labels(outcome.scope).inc()
            self.metrics.discord_deliveries.labels("rate_limited").inc()
            self._pause(now + outcome.wait, outcome.scope, outcome)
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
            self._pause(now + pause, "banned", outcome)
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

    def _pause(self, until: float, reason: str, outcome: Outcome) -> None:
        self.metrics.rate_limit_pauses.labels(ENDPOINT, reason).inc()
        self.metrics.rate_limit_pause_seconds.labels(ENDPOINT).inc(
            max(until - max(self._not_before, time.monotonic()), 0.0)
        )
        scope, key = window_scope(outcome, self.webhook.webhook_id, self.channel_id)
        self._hold(Window(scope, key, until, reason))

    def _hold(self, window: Window) -> None:
        """Hold what ``window`` applies to: this webhook, its channel or every webhook."""
        self._not_before = max(self._not_before, window.until)
        if window.scope == GLOBAL:  # a global 429 or an IP ban holds every webhook
            self.gate.not_before = max(self.gate.not_before, window.until)
        elif window.scope == CHANNEL:  # the channel's limit: every webhook posting into it
            self.window.not_before = max(self.window.not_before, window.until)
        where = (window.scope, window.key)
        known = self._unsaved.get(where)
        if known is None or window.until > known.until:
            self._unsaved[where] = window

    def unsaved(self) -> list[Window]:
        """The windows not stored yet (for the next ledger transaction)."""
        return list(self._unsaved.values())

    def saved(self, windows: list[Window]) -> None:
        """These windows are stored: forget them (unless a later one replaced them meanwhile)."""
        for w in windows:
            if self._unsaved.get((w.scope, w.key)) == w:
                del self._unsaved[(w.scope, w.key)]

    def honour(self, waits: list[tuple[str, str, float]], now: float) -> float:
        """Windows another sender stored, as (scope, reason, seconds left); the longest wait."""
        cap = max(
            self.settings.discord_max_retry_wait_seconds, self.settings.discord_ban_pause_seconds
        )
        longest = 0.0
        for _, _, seconds in waits:
            longest = max(longest, min(seconds, cap))
        self._not_before = max(self._not_before, now + longest)
        return longest

    def _obey_headers(self, headers: dict[str, str], now: float) -> None:
        """When the bucket is empty, hold the next request until it resets."""
        remaining = headers.get("x-ratelimit-remaining")
        reset_after = headers.get("x-ratelimit-reset-after")
        if remaining is None or reset_after is None:
            return
        try:
            if int(float(remaining)) <= 0:
                wait = min(float(reset_after), self.settings.discord_max_retry_wait_seconds)
                if wait > 0:
                    self._hold(Window(WEBHOOK, self.webhook.webhook_id, now + wait, "bucket"))
        except ValueError:
            logger.warning("Discord sent unreadable rate-limit headers; ignoring them")
