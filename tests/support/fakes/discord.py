"""Fake Discord execute-webhook API on a local aiohttp port.

Follows ``/work/shared/docs/steam-api.md`` (Discord section) and the official examples:

* ``POST /api/webhooks/{id}/{token}`` is API v6 (``retry_after`` in MILLISECONDS, what a URL
  pasted from the Discord app gives); ``POST /api/v{6..10}/webhooks/{id}/{token}`` with v8+ in
  seconds. ``?wait=true`` answers 200 with the created message, otherwise 204 with no body.
* Message limits (content 2000, 10 embeds, title 256, description 4096, 25 fields, field name
  256 / value 1024, footer 2048, author 256, 6000 characters over all embeds): a violation, or a
  body that is not JSON, is 400 ``{"code":50035,"message":"Invalid Form Body","errors":{...}}``.
  A message with neither content nor embeds is 400 code 50006, as on Discord.
* Rate limits, checked in Discord's order: global (50 requests/s over all webhooks, or
  :attr:`FakeDiscord.global_rate_limited`), then the per-webhook bucket (5 per 2 s, reported by
  ``X-RateLimit-*`` headers on every answer), then the hidden per-channel limit (30 messages per
  60 s, never in the headers, 429 with ``X-RateLimit-Scope: shared`` and a long ``retry_after``).
  The bucket is a fixed window opened by the first request; every request that passes the global
  check uses a slot, whatever its outcome (invalid bodies and unknown webhooks included).
* ``GET /api[/vN]/webhooks/{id}/{token}`` ("Get Webhook with Token") answers the webhook object
  (``id``, ``type`` 1, ``guild_id``, ``channel_id``, ``name``, ``avatar``, ``application_id``,
  ``token``; no ``user``: this route needs no auth), with a bucket of its own (Discord buckets
  per route) and the same 404 / 401 for deleted webhooks and bad tokens. Counted in
  :attr:`FakeDiscord.webhook_gets`, not in ``requests``.
* Faults: :meth:`FakeDiscord.fail_next`; deleted webhooks (404 code 10015) and bad tokens
  (401 code 50027).

Conformance counters for tests: ``requests_in_retry_window`` (requests sent before an earlier
429's ``retry_after`` elapsed), ``calls_after_delete`` and ``requests_after_cloudflare``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import logging
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from tests.support.fakes import Clock, FakeServer, run_until_signalled

__all__ = ["FAULT_KINDS", "DiscordMessage", "DiscordRequest", "FakeDiscord"]

log = logging.getLogger(__name__)

FAULT_KINDS: Final = frozenset({"500", "502", "503", "timeout", "cloudflare", "global429"})
SUPPORTED_VERSIONS: Final = range(6, 11)
UNVERSIONED: Final = 6
# v6 and v7 report retry_after in milliseconds; v8 switched to seconds.
FIRST_SECONDS_VERSION: Final = 8

LIMIT_CONTENT: Final = 2000
LIMIT_EMBEDS: Final = 10
LIMIT_TITLE: Final = 256
LIMIT_DESCRIPTION: Final = 4096
LIMIT_FIELDS: Final = 25
LIMIT_FIELD_NAME: Final = 256
LIMIT_FIELD_VALUE: Final = 1024
LIMIT_FOOTER: Final = 2048
LIMIT_AUTHOR: Final = 256
LIMIT_EMBED_TOTAL: Final = 6000

DISCORD_EPOCH_MS: Final = 1_420_070_400_000

CLOUDFLARE_BODY: Final = (
    '{"code": 0, "message": "You are being blocked from accessing our API temporarily due to '
    "exceeding our rate limits frequently. Please read our docs at "
    'https://discord.com/developers/docs/topics/rate-limits to prevent this moving forward."}'
)
UNKNOWN_WEBHOOK_BODY: Final = '{"message": "Unknown Webhook", "code": 10015}'
INVALID_TOKEN_BODY: Final = '{"message": "Invalid Webhook Token", "code": 50027}'
_5XX: Final[dict[int, tuple[str, str]]] = {
    500: ('{"message": "500: Internal Server Error", "code": 0}', "application/json"),
    # 502 comes from Cloudflare's edge as an HTML page.
    502: (
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>"
        "502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>",
        "text/html",
    ),
    503: (
        "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        "text/plain",
    ),
}


@dataclass(frozen=True, slots=True)
class DiscordMessage:
    """A message the fake accepted."""

    webhook_id: str
    api_version: int  # 6 for an unversioned URL
    time: float  # the fake's clock at arrival
    payload: dict[str, Any]
    message_id: str
    channel_id: str
    wait: bool

    @property
    def embeds(self) -> list[dict[str, Any]]:
        embeds = self.payload.get("embeds") or []
        return list(embeds)

    @property
    def visible_embeds(self) -> list[dict[str, Any]]:
        """Embeds a user sees: Discord merges embeds sharing a ``url`` into the first one."""
        seen: set[str] = set()
        shown: list[dict[str, Any]] = []
        for embed in self.embeds:
            url = embed.get("url")
            if url is not None:
                if url in seen:
                    continue
                seen.add(url)
            shown.append(embed)
        return shown


@dataclass(frozen=True, slots=True)
class DiscordRequest:
    """One request as the fake saw it."""

    time: float
    webhook_id: str
    api_version: int | None  # None for an unsupported version
    status: int
    # "user" / "shared" / "global" for 429s, the fault kind for injected faults, else None.
    reason: str | None = None
    in_retry_window: bool = False


@dataclass(slots=True)
class _Bucket:
    remaining: int
    reset_at: float  # clock time at which the window closes


@dataclass(slots=True)
class _Webhook:
    bucket_hash: str
    channel_id: str
    deleted: bool = False
    invalid_token: bool = False
    sent_404: bool = False
    blocked_until: float = -math.inf
    bucket: _Bucket | None = None
    get_bucket: _Bucket | None = None
    guild_id: str = "1000000000000000001"


class FakeDiscord(FakeServer):
    """Fake ``POST /api[/vN]/webhooks/{id}/{token}`` with Discord's limits and failure modes."""

    def __init__(
        self,
        *,
        bucket: tuple[int, float] = (5, 2.0),
        channel_limit: tuple[int, float] | None = (30, 60.0),
        global_limit: tuple[int, float] | None = (50, 1.0),
        global_retry_after: float = 1.0,
        timeout_delay: float = 30.0,
        cloudflare_pause: float = 600.0,
        latency: float = 0.0,
        clock: Clock = time.monotonic,
    ) -> None:
        """Limits are ``(count, seconds)``; None switches the channel or global limit off.

        ``global_retry_after`` is the ``retry_after`` (seconds) of global 429s from the switch
        and from ``fail_next(.., "global429")``. ``cloudflare_pause`` is how long after a
        Cloudflare ban requests are counted in :attr:`requests_after_cloudflare`.
        """
        super().__init__(clock=clock)
        self.bucket = bucket
        self.channel_limit = channel_limit
        self.global_limit = global_limit
        self.global_retry_after = global_retry_after
        self.timeout_delay = timeout_delay
        self.cloudflare_pause = cloudflare_pause
        self.latency = latency
        # Switch: while True every request gets a global 429.
        self.global_rate_limited = False

        self._webhooks: dict[str, _Webhook] = {}
        self._channels: dict[str, deque[float]] = {}
        self._global_window: deque[float] = deque()
        self._global_blocked_until = -math.inf
        self._cloudflare_until = -math.inf
        self._faults: deque[str] = deque()
        self._sequence = itertools.count()

        self.messages: list[DiscordMessage] = []
        self.requests: list[DiscordRequest] = []
        self.count_429 = 0
        self.requests_in_retry_window = 0
        self.calls_after_delete = 0
        self.requests_after_cloudflare = 0
        # (webhook id, status) of every GET of a webhook object.
        self.webhook_gets: list[tuple[str, int]] = []

    # ------------------------------------------------------------------ control API

    def webhook_url(self, id: str = "123", token: str = "tok", version: int | None = None) -> str:
        """URL of a webhook on this fake; ``version`` None = unversioned (v6 semantics)."""
        if not self.url:
            raise RuntimeError("FakeDiscord is not started")
        prefix = "/api" if version is None else f"/api/v{version}"
        return f"{self.url}{prefix}/webhooks/{id}/{token}"

    def delete_webhook(self, id: str) -> None:
        """From now on the webhook answers 404 code 10015."""
        self._hook(id).deleted = True

    def invalid_token(self, id: str) -> None:
        """From now on the webhook answers 401 code 50027."""
        self._hook(id).invalid_token = True

    def restore_webhook(self, id: str) -> None:
        """Undo :meth:`delete_webhook` and :meth:`invalid_token` (a permission fixed, say)."""
        hook = self._hook(id)
        hook.deleted = hook.invalid_token = hook.sent_404 = False

    def set_channel(self, webhook_id: str, channel_id: str) -> None:
        """Make webhooks share a channel (and so its hidden 30/min limit)."""
        self._hook(webhook_id).channel_id = channel_id

    def channel_of(self, webhook_id: str) -> str:
        """Channel a webhook posts into (a generated snowflake unless set)."""
        return self._hook(webhook_id).channel_id

    def retry_window_end(self, webhook_id: str) -> float:
        """Clock time until which a request of this webhook is inside an earlier 429's window."""
        return max(self._hook(webhook_id).blocked_until, self._global_blocked_until)

    def fail_next(self, n: int, kind: str) -> None:
        """Answer the next ``n`` requests (any webhook) with fault ``kind``.

        Kinds: 500, 502, 503 (no rate-limit headers: they come from the edge), timeout (stall
        ``timeout_delay`` s, then 504; the message is NOT delivered), cloudflare (429 with body
        code 0 and no X-RateLimit/Retry-After headers), global429.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        self._faults.extend([kind] * n)

    def messages_for(self, webhook_id: str) -> list[DiscordMessage]:
        """Accepted messages of one webhook, in order."""
        return [m for m in self.messages if m.webhook_id == webhook_id]

    def reset_stats(self) -> None:
        """Clear recorded messages, requests and counters (not limiter state or faults)."""
        self.messages.clear()
        self.requests.clear()
        self.count_429 = 0
        self.requests_in_retry_window = 0
        self.calls_after_delete = 0
        self.requests_after_cloudflare = 0

    def _hook(self, webhook_id: str) -> _Webhook:
        hook = self._webhooks.get(webhook_id)
        if hook is None:
            digest = hashlib.sha1(f"webhook:{webhook_id}".encode()).hexdigest()
            hook = _Webhook(bucket_hash=digest[:32], channel_id=self._snowflake())
            self._webhooks[webhook_id] = hook
        return hook

    def _snowflake(self) -> str:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (1 << 17) | (next(self._sequence) & 0xFFF))

    # ------------------------------------------------------------------ HTTP

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/webhooks/{id}/{token}", self._handle)
        app.router.add_post("/api/v{version:[0-9]+}/webhooks/{id}/{token}", self._handle)
        app.router.add_get("/api/webhooks/{id}/{token}", self._get_webhook)
        app.router.add_get("/api/v{version:[0-9]+}/webhooks/{id}/{token}", self._get_webhook)
        return app

    async def _get_webhook(self, request: web.Request) -> web.Response:
        """Get Webhook with Token: the webhook object, no ``user`` (this route needs no auth)."""
        now = self.clock()
        webhook_id = request.match_info["id"]
        version_text = request.match_info.get("version")
        version = UNVERSIONED if version_text is None else int(version_text)
        hook = self._hook(webhook_id)

        def done(response: web.Response) -> web.Response:
            self.webhook_gets.append((webhook_id, response.status))
            return response

        await self._sleep(self.latency)
        if version not in SUPPORTED_VERSIONS:
            body = '{"message": "404: Not Found", "code": 0}'
            return done(web.Response(status=404, text=body, content_type="application/json"))
        if self.global_rate_limited:
            return done(self._global_429(now, version, self.global_retry_after))
        limit, period = self.bucket
        state = hook.get_bucket
        if state is None or now >= state.reset_at:
            state = hook.get_bucket = _Bucket(remaining=limit, reset_at=now + period)
        if state.remaining <= 0:
            return done(self._limited(hook, now, version, state.reset_at - now, scope="user"))
        state.remaining -= 1
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(state.remaining),
            "X-RateLimit-Reset": f"{time.time() + _ceil_ms(state.reset_at - now):.3f}",
            "X-RateLimit-Reset-After": f"{_ceil_ms(state.reset_at - now):.3f}",
            "X-RateLimit-Bucket": hook.bucket_hash[::-1],
        }
        if hook.deleted:
            return done(self._json(404, UNKNOWN_WEBHOOK_BODY, headers))
        if hook.invalid_token:
            return done(self._json(401, INVALID_TOKEN_BODY, headers))
        body = {
            "application_id": None,
            "avatar": None,
            "channel_id": hook.channel_id,
            "guild_id": hook.guild_id,
            "id": webhook_id,
            "name": "Fake Webhook",
            "type": 1,
            "token": request.match_info["token"],
        }
        return done(self._json(200, json.dumps(body), headers))

    async def _handle(self, request: web.Request) -> web.Response:
        now = self.clock()
        webhook_id = request.match_info["id"]
        version_text = request.match_info.get("version")
        version = UNVERSIONED if version_text is None else int(version_text)
        hook = self._hook(webhook_id)

        in_window = now < hook.blocked_until or now < self._global_blocked_until
        if in_window:
            self.requests_in_retry_window += 1
        if now < self._cloudflare_until:
            self.requests_after_cloudflare += 1

        def done(response: web.Response, reason: str | None = None) -> web.Response:
            self.requests.append(
                DiscordRequest(
                    now,
                    webhook_id,
                    version if version in SUPPORTED_VERSIONS else None,
                    response.status,
                    reason,
                    in_window,
                )
            )
            if response.status == 429:
                self.count_429 += 1
            return response

        await self._sleep(self.latency)

        if version not in SUPPORTED_VERSIONS:
            body = '{"message": "404: Not Found", "code": 0}'
            return done(web.Response(status=404, text=body, content_type="application/json"))

        fault = self._faults.popleft() if self._faults else None
        if fault in ("500", "502", "503"):
            assert fault is not None
            text, ctype = _5XX[int(fault)]
            return done(web.Response(status=int(fault), text=text, content_type=ctype), fault)
        if fault == "timeout":
            await self._sleep(self.timeout_delay)
            return done(web.Response(status=504, text="504 Gateway Time-out"), fault)
        if fault == "cloudflare":
            self._cloudflare_until = now + self.cloudflare_pause
            # Deliberately no X-RateLimit-* and no Retry-After: that is how a ban is told apart.
            response = web.Response(
                status=429, text=CLOUDFLARE_BODY, content_type="application/json"
            )
            return done(response, fault)
        if fault == "global429" or self.global_rate_limited:
            return done(self._global_429(now, version, self.global_retry_after), "global")

        if self.global_limit is not None:
            count, per = self.global_limit
            window = self._global_window
            while window and window[0] <= now - per:
                window.popleft()
            if len(window) >= count:
                return done(self._global_429(now, version, window[0] + per - now), "global")
            window.append(now)

        # Per-webhook bucket: fixed window opened by the first request.
        limit, period = self.bucket
        state = hook.bucket
        if state is None or now >= state.reset_at:
            state = hook.bucket = _Bucket(remaining=limit, reset_at=now + period)
        if state.remaining <= 0:
            retry = state.reset_at - now
            return done(self._limited(hook, now, version, retry, scope="user"), "user")
        state.remaining -= 1
        headers = self._bucket_headers(hook, now)

        if hook.deleted:
            if hook.sent_404:
                self.calls_after_delete += 1
            hook.sent_404 = True
            return done(self._json(404, UNKNOWN_WEBHOOK_BODY, headers))
        if hook.invalid_token:
            return done(self._json(401, INVALID_TOKEN_BODY, headers))

        payload, error = await self._read_payload(request)
        if error is None:
            assert payload is not None
            error = validate_payload(payload)
        if error is not None:
            return done(self._json(400, json.dumps(error), headers))
        assert payload is not None

        if self.channel_limit is not None:
            count, per = self.channel_limit
            sent = self._channels.setdefault(hook.channel_id, deque())
            while sent and sent[0] <= now - per:
                sent.popleft()
            if len(sent) >= count:
                retry = sent[0] + per - now
                return done(self._limited(hook, now, version, retry, scope="shared"), "shared")
            sent.append(now)

        wait = request.query.get("wait", "").lower() in ("true", "1")
        message = DiscordMessage(
            webhook_id=webhook_id,
            api_version=version,
            time=now,
            payload=payload,
            message_id=self._snowflake(),
            channel_id=hook.channel_id,
            wait=wait,
        )
        self.messages.append(message)
        if not wait:
            return done(web.Response(status=204, headers=headers))
        return done(self._json(200, json.dumps(_message_json(message)), headers))

    @staticmethod
    def _json(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status, text=text, content_type="application/json", headers=headers
        )

    def _bucket_headers(self, hook: _Webhook, now: float) -> dict[str, str]:
        limit = self.bucket[0]
        state = hook.bucket
        if state is None or now >= state.reset_at:
            remaining, reset_after = limit, 0.0
        else:
            remaining, reset_after = state.remaining, _ceil_ms(state.reset_at - now)
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": hook.bucket_hash,
        }

    def _limited(
        self, hook: _Webhook, now: float, version: int, retry: float, *, scope: str
    ) -> web.Response:
        retry = _ceil_ms(retry)
        # Counted from arrival: a client that waits retry_after after reading the answer is
        # always outside the window.
        hook.blocked_until = max(hook.blocked_until, now + retry)
        message = (
            "You are being rate limited."
            if scope == "user"
            else "The resource is being rate limited."
        )
        body = {"message": message, "retry_after": _retry_value(retry, version), "global": False}
        headers = self._bucket_headers(hook, now)
        headers["Retry-After"] = str(math.ceil(retry))
        headers["X-RateLimit-Scope"] = scope
        return self._json(429, json.dumps(body), headers)

    def _global_429(self, now: float, version: int, retry: float) -> web.Response:
        retry = _ceil_ms(retry)
        self._global_blocked_until = max(self._global_blocked_until, now + retry)
        body = {
            "message": "You are being rate limited.",
            "retry_after": _retry_value(retry, version),
            "global": True,
        }
        headers = {
            "Retry-After": str(math.ceil(retry)),
            "X-RateLimit-Global": "true",
            "X-RateLimit-Scope": "global",
        }
        return self._json(429, json.dumps(body), headers)

    @staticmethod
    async def _read_payload(
        request: web.Request,
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Parse a JSON body, or the ``payload_json`` part of a multipart one."""
        try:
            if request.content_type.startswith("multipart/"):
                form = await request.post()
                raw = form.get("payload_json")
                text = raw if isinstance(raw, str) else "{}"
            else:
                text = await request.text()
            payload = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            return None, _form_error({"_errors": [_err("MODEL_TYPE_CONVERT", "Invalid JSON")]})
        if not isinstance(payload, dict):
            error = _err("MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
            return None, _form_error({"_errors": [error]})
        return payload, None


def _ceil_ms(seconds: float) -> float:
    # Report times rounded UP to the millisecond so that waiting exactly the reported time is
    # always enough.
    return max(0.0, math.ceil(seconds * 1000 - 1e-6) / 1000)


def _retry_value(seconds: float, version: int) -> float | int:
    if version < FIRST_SECONDS_VERSION:
        return math.ceil(seconds * 1000 - 1e-6)
    return seconds


def _message_json(message: DiscordMessage) -> dict[str, Any]:
    payload = message.payload
    created = datetime.fromtimestamp(time.time(), UTC).isoformat()
    return {
        "id": message.message_id,
        "type": 0,
        "content": payload.get("content") or "",
        "channel_id": message.channel_id,
        "author": {
            "bot": True,
            "id": message.webhook_id,
            "username": payload.get("username") or "Fake Webhook",
            "avatar": None,
            "discriminator": "0000",
        },
        "attachments": [],
        "embeds": [{"type": "rich", **embed} for embed in message.embeds],
        "mentions": [],
        "mention_roles": [],
        "pinned": False,
        "mention_everyone": False,
        "tts": bool(payload.get("tts", False)),
        "timestamp": created,
        "edited_timestamp": None,
        "flags": int(payload.get("flags") or 0),
        "components": [],
        "webhook_id": message.webhook_id,
    }


# ---------------------------------------------------------------------- validation


def _err(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _form_error(errors: dict[str, Any]) -> dict[str, Any]:
    return {"code": 50035, "message": "Invalid Form Body", "errors": errors}


def _too_long(limit: int) -> dict[str, Any]:
    return {"_errors": [_err("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")]}


def _not_string() -> dict[str, Any]:
    return {"_errors": [_err("BASE_TYPE_STRING", "Could not interpret value as string.")]}


def _required() -> dict[str, Any]:
    return {"_errors": [_err("BASE_TYPE_REQUIRED", "This field is required")]}


def _check_text(
    errors: dict[str, Any], key: str, value: Any, limit: int, *, required: bool = False
) -> int:
    """Validate one string field into ``errors[key]``; return its length for the 6000 sum."""
    if value is None:
        if required:
            errors[key] = _required()
        return 0
    if not isinstance(value, str):
        errors[key] = _not_string()
        return 0
    if required and not value:
        errors[key] = _required()
    elif len(value) > limit:
        errors[key] = _too_long(limit)
    return len(value)


def validate_payload(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Return Discord's 400 body for ``payload`` (50035 or 50006), or None if it is valid."""
    errors: dict[str, Any] = {}
    content = payload.get("content")
    _check_text(errors, "content", content, LIMIT_CONTENT)

    embeds = payload.get("embeds")
    total = 0
    if embeds is not None:
        if not isinstance(embeds, list):
            errors["embeds"] = {"_errors": [_err("BASE_TYPE_LIST", "Must be a list.")]}
            embeds = []
        elif len(embeds) > LIMIT_EMBEDS:
            errors["embeds"] = _too_long(LIMIT_EMBEDS)
        embed_errors: dict[str, Any] = {}
        for index, embed in enumerate(embeds if isinstance(embeds, list) else []):
            mine: dict[str, Any] = {}
            if not isinstance(embed, dict):
                embed_errors[str(index)] = {
                    "_errors": [_err("MODEL_TYPE_CONVERT", "Only dictionaries may be used")]
                }
                continue
            total += _check_text(mine, "title", embed.get("title"), LIMIT_TITLE)
            total += _check_text(mine, "description", embed.get("description"), LIMIT_DESCRIPTION)
            footer = embed.get("footer")
            if isinstance(footer, dict):
                sub: dict[str, Any] = {}
                total += _check_text(sub, "text", footer.get("text"), LIMIT_FOOTER, required=True)
                if sub:
                    mine["footer"] = sub
            author = embed.get("author")
            if isinstance(author, dict):
                sub = {}
                total += _check_text(sub, "name", author.get("name"), LIMIT_AUTHOR, required=True)
                if sub:
                    mine["author"] = sub
            fields = embed.get("fields")
            if isinstance(fields, list):
                if len(fields) > LIMIT_FIELDS:
                    mine["fields"] = _too_long(LIMIT_FIELDS)
                field_errors: dict[str, Any] = {}
                for f_index, item in enumerate(fields):
                    sub = {}
                    item = item if isinstance(item, dict) else {}
                    total += _check_text(
                        sub, "name", item.get("name"), LIMIT_FIELD_NAME, required=True
                    )
                    total += _check_text(
                        sub, "value", item.get("value"), LIMIT_FIELD_VALUE, required=True
                    )
                    if sub:
                        field_errors[str(f_index)] = sub
                if field_errors:
                    mine.setdefault("fields", {}).update(field_errors)
            if mine:
                embed_errors[str(index)] = mine
        if embed_errors:
            errors.setdefault("embeds", {}).update(embed_errors)
        if total > LIMIT_EMBED_TOTAL:
            entry = errors.setdefault("embeds", {})
            entry.setdefault("_errors", []).append(
                _err(
                    "MAX_EMBED_SIZE_EXCEEDED",
                    f"Embed size exceeds maximum size of {LIMIT_EMBED_TOTAL}",
                )
            )
    if errors:
        return _form_error(errors)
    if not content and not embeds:
        return {"message": "Cannot send an empty message", "code": 50006}
    return None


# ---------------------------------------------------------------------- standalone


def main(argv: Iterable[str] | None = None) -> None:
    """Serve a FakeDiscord until SIGINT/SIGTERM (for demos and manual runs)."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.fakes.discord")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run_until_signalled(FakeDiscord(), args.host, args.port))


if __name__ == "__main__":
    main()
