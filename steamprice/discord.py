"""Discord webhook rules: URL normalisation, embeds, message limits, responses (pure)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from steamprice.models import PriceChange
from steamprice.pricing import effective_discount

STORE_APP_URL = "https://store.steampowered.com/app/{app_id}/"
HEADER_IMAGE_URL = (
    "https://shared.akamai.steamstatic.com/store_item_assets/steam/apps/{app_id}/header.jpg"
)

# Discord's documented limits (a violation is a 400 with code 50035).
MAX_EMBEDS = 10
MAX_TOTAL_CHARS = 6000
MAX_TITLE = 256
MAX_DESCRIPTION = 4096
MAX_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER = 2048

_WEBHOOK_RE = re.compile(r"^(https?://[^/]+)/api(?:/v\d+)?/webhooks/(\d+)/([^/?#]+)")

KIND_LABELS = {
    "discount_started": "Sale started",
    "discount_ended": "Sale ended",
    "discount_changed": "Discount changed",
    "list_price_increased": "Price increased",
    "list_price_decreased": "Price decreased",
    "became_priced": "Now priced",
    "became_unpriced": "No longer priced",
    "became_unknown": "No longer listed",
    "currency_changed": "Currency changed",
}
KIND_COLOURS = {
    "discount_started": 0x2ECC71,
    "discount_changed": 0x27AE60,
    "list_price_decreased": 0x3498DB,
    "discount_ended": 0x95A5A6,
    "list_price_increased": 0xE67E22,
    "became_priced": 0x9B59B6,
    "became_unpriced": 0x7F8C8D,
    "became_unknown": 0x7F8C8D,
    "currency_changed": 0xF1C40F,
}
HISTORICAL_LOW_COLOUR = 0xF1C40F
# Currencies whose x100 amounts are shown without decimals.
NO_DECIMALS = {"JPY", "KRW", "VND", "IDR", "CLP", "COP", "TWD", "HUF", "KZT", "UAH"}
SYMBOLS = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "KRW": "₩",
    "CNY": "¥",
    "RUB": "₽",
    "BRL": "R$",
    "AUD": "A$",
    "CAD": "C$",
    "PHP": "₱",
    "INR": "₹",
    "PLN": "zł ",
}


class WebhookUrlError(ValueError):
    """The configured URL is not a Discord webhook URL (the message never contains it)."""


@dataclass(frozen=True, slots=True)
class Webhook:
    base: str
    webhook_id: str
    token: str

    @property
    def url(self) -> str:
        """The v10 URL with ``wait=true``: a 200 with the message instead of a silent 204."""
        return f"{self.base}/api/v10/webhooks/{self.webhook_id}/{self.token}?wait=true"

    @property
    def redacted(self) -> str:
        return f"{self.base}/api/v10/webhooks/{self.webhook_id}/***"


def parse_webhook_url(url: str) -> Webhook:
    """Normalise any pasted webhook URL (unversioned means v6, where waits are in ms) to v10."""
    m = _WEBHOOK_RE.match(url.strip())
    if not m:
        raise WebhookUrlError(
            "DISCORD_WEBHOOK_URL is not of the form https://HOST/api/webhooks/ID/TOKEN"
        )
    return Webhook(m.group(1), m.group(2), m.group(3))


def format_price(amount: int | None, currency: str | None) -> str:
    """``amount`` is in x100 units in every currency; JPY and KRW are shown without decimals."""
    if amount is None or currency is None:
        return "—"
    code = currency.upper()
    if code in NO_DECIMALS:
        text = f"{amount // 100:,}"
    else:
        text = f"{amount / 100:,.2f}"
    symbol = SYMBOLS.get(code)
    return f"{symbol}{text}" if symbol else f"{text} {code}"


def _price_line(
    initial: int | None, final: int | None, discount: int | None, currency: str | None
) -> str:
    d = effective_discount(initial, final, discount)
    if d:
        return f"~~{format_price(initial, currency)}~~ **{format_price(final, currency)}** (-{d}%)"
    return f"**{format_price(final, currency)}**"


def field_for(event: PriceChange) -> dict[str, Any]:
    """One region's change: old -> new, discount, kind and the historical-low badge."""
    label = KIND_LABELS.get(event.kind, event.kind)
    old = (
        _price_line(event.old_initial, event.old_final, event.old_discount, event.old_currency)
        if event.old_status == "priced"
        else f"*{event.old_status.replace('_', ' ')}*"
    )
    new = (
        _price_line(event.new_initial, event.new_final, event.new_discount, event.new_currency)
        if event.new_status == "priced"
        else f"*{event.new_status.replace('_', ' ')}*"
    )
    value = f"{old} → {new}"
    if event.new_historical_low:
        value += "\n🏆 New historical low"
    elif event.matches_historical_low:
        value += "\n🏅 Matches historical low"
    return {
        "name": _clip(f"{event.cc.upper()} · {label}", MAX_FIELD_NAME),
        "value": _clip(value, MAX_FIELD_VALUE),
        "inline": True,
    }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_embed(app_id: int, name: str | None, events: Sequence[PriceChange]) -> dict[str, Any]:
    """One embed per app (Discord merges embeds sharing a url), one field per region."""
    first = events[0]
    observed: datetime = max(e.observed_at for e in events)
    colour = (
        HISTORICAL_LOW_COLOUR
        if any(e.new_historical_low for e in events)
        else KIND_COLOURS.get(first.kind, 0x5865F2)
    )
    fields = [field_for(e) for e in sorted(events, key=lambda e: e.cc)]
    embed: dict[str, Any] = {
        "title": _clip(name or f"App {app_id}", MAX_TITLE),
        "url": STORE_APP_URL.format(app_id=app_id),
        "color": colour,
        "thumbnail": {"url": HEADER_IMAGE_URL.format(app_id=app_id)},
        "footer": {
            "text": _clip(f"steamprice · observed {observed:%Y-%m-%d %H:%M} UTC", MAX_FOOTER)
        },
        "timestamp": observed.isoformat(),
    }
    # An embed alone must fit a message: drop regions (saying how many) until it does.
    shown = min(len(fields), MAX_FIELDS)
    while True:
        embed["fields"] = fields[:shown]
        if shown < len(fields):
            embed["description"] = f"…and {len(fields) - shown} more regions"
        if embed_chars(embed) <= MAX_TOTAL_CHARS or shown == 0:
            return embed
        shown -= 1


def embed_chars(embed: Mapping[str, Any]) -> int:
    """Characters Discord counts against the 6000 limit of a message."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += len(embed.get("footer", {}).get("text", ""))
    total += len(embed.get("author", {}).get("name", ""))
    for f in embed.get("fields", []):
        total += len(f.get("name", "")) + len(f.get("value", ""))
    return total


def pack_messages(embeds: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Group embeds into messages of at most 10 embeds and 6000 characters, keeping order."""
    messages: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    chars = 0
    for embed in embeds:
        n = embed_chars(embed)
        if current and (len(current) >= MAX_EMBEDS or chars + n > MAX_TOTAL_CHARS):
            messages.append(current)
            current, chars = [], 0
        current.append(embed)
        chars += n
    if current:
        messages.append(current)
    return messages


def payload(embeds: list[dict[str, Any]]) -> dict[str, Any]:
    return {"embeds": embeds, "allowed_mentions": {"parse": []}}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one webhook answer means for the sender.

    ``action``: ``sent``, ``retry_after`` (wait ``wait`` seconds, resend the same payload),
    ``disable`` (webhook gone or token bad: never call again), ``reject`` (400: the payload is
    bad; isolate the offending embed), ``backoff`` (5xx: retry with backoff), ``ban``
    (Cloudflare: long pause).
    """

    action: str
    wait: float = 0.0
    global_: bool = False
    message_id: str | None = None
    detail: str = ""


def classify_response(
    status: int, headers: Mapping[str, str], body: bytes, max_wait: float = 3600.0
) -> Outcome:
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    data = doc if isinstance(doc, dict) else {}
    if 200 <= status < 300:
        return Outcome("sent", message_id=str(data.get("id")) if data.get("id") else None)
    code = data.get("code")
    if status == 429:
        has_rl_headers = any(h.lower().startswith("x-ratelimit") for h in headers)
        if not has_rl_headers and "retry_after" not in data:
            return Outcome(
                "ban", wait=max_wait, detail="Cloudflare ban (429 without rate-limit headers)"
            )
        retry = data.get("retry_after", headers.get("Retry-After", 1.0))
        try:
            wait = float(retry)
        except (TypeError, ValueError):
            wait = 1.0
        return Outcome(
            "retry_after",
            wait=min(max(wait, 0.0), max_wait),
            global_=bool(data.get("global")),
            detail="429",
        )
    if (
        (status == 404 and code == 10015)
        or (status == 401 and code == 50027)
        or status in (401, 404)
    ):
        return Outcome("disable", detail=f"HTTP {status} code {code}")
    if status == 400:
        return Outcome("reject", detail=f"HTTP 400 code {code}")
    if status == 403:
        return Outcome("disable", detail=f"HTTP 403 code {code}")
    return Outcome("backoff", detail=f"HTTP {status}")
