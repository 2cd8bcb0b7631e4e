"""Discord messages: embeds and digests within every limit, and how a backlog is cut (pure).

Nothing here does I/O or reads the clock: the notifier (``notifier.py``) plans each message with
these functions, so every rule is unit-tested without a network.
"""

from __future__ import annotations

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
MAX_AUTHOR = 256
MAX_CONTENT = 2000

_APP_URL_RE = re.compile(r"https://store\.steampowered\.com/app/(\d+)/")

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
# An embed shows several regions but has one colour: the kind a reader cares most about wins.
KIND_PRIORITY = (
    "discount_started",
    "discount_changed",
    "list_price_decreased",
    "became_priced",
    "list_price_increased",
    "discount_ended",
    "currency_changed",
    "became_unpriced",
    "became_unknown",
)
HISTORICAL_LOW_COLOUR = 0xF1C40F
DIGEST_COLOUR = 0x5865F2
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
NEW_LOW_BADGE = "🏆"
MATCHED_LOW_BADGE = "🏅"

# Digest layout: app names are clipped so that one famous long title cannot crowd out others;
# the title and footer of a digest message are kept within a reserve of the 6000 characters.
DIGEST_NAME_MAX = 64
DIGEST_LINE_MAX = 1000
_DIGEST_TITLE_RESERVE = 64
_DIGEST_FOOTER_RESERVE = 96


# ---------------------------------------------------------------------- text measure


def text_len(text: str) -> int:
    """Length as Discord may count it: UTF-16 units (an emoji counts 2), never less than ``len``."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-16 units, ending in an ellipsis when cut."""
    if text_len(text) <= limit:
        return text
    out: list[str] = []
    used = 0
    for ch in text:
        n = text_len(ch)
        if used + n > limit - 1:
            break
        out.append(ch)
        used += n
    return "".join(out) + "…"


_MARKDOWN_SPECIAL = re.compile(r"([\\*_~`|\[\]()<>#])")


def escape_markdown(text: str) -> str:
    """A name shown as literal text inside markdown (links, bold) on one line."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


# ---------------------------------------------------------------------- rich embeds


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


def _status_text(status: str) -> str:
    return f"*{status.replace('_', ' ')}*"


def discord_time(moment: datetime, style: str = "R") -> str:
    """Discord's timestamp markup: each reader sees it in their own time zone (R: "in 2 days")."""
    return f"<t:{int(moment.timestamp())}:{style}>"


def sale_end(event: PriceChange) -> str:
    """ "Sale ends <t:...:R>" when the new price is a discount whose end Steam announced."""
    if event.discount_ends_at is None or not effective_discount(
        event.new_initial, event.new_final, event.new_discount
    ):
        return ""
    return f"Sale ends {discord_time(event.discount_ends_at)}"


def field_for(event: PriceChange) -> dict[str, Any]:
    """One region's change: old -> new, discount, kind and the historical-low badge."""
    label = KIND_LABELS.get(event.kind, event.kind)
    old = (
        _price_line(event.old_initial, event.old_final, event.old_discount, event.old_currency)
        if event.old_status == "priced"
        else _status_text(event.old_status)
    )
    new = (
        _price_line(event.new_initial, event.new_final, event.new_discount, event.new_currency)
        if event.new_status == "priced"
        else _status_text(event.new_status)
    )
    value = f"{old} → {new}"
    ends = sale_end(event)
    if ends:
        value += f"\n{ends}"
    if event.new_historical_low:
        value += f"\n{NEW_LOW_BADGE} New historical low"
    elif event.matches_historical_low:
        value += f"\n{MATCHED_LOW_BADGE} Matches historical low"
    return {
        "name": clip(f"{event.cc.upper()} · {label}", MAX_FIELD_NAME),
        "value": clip(value, MAX_FIELD_VALUE),
        "inline": True,
    }


def embed_colour(events: Sequence[PriceChange]) -> int:
    """Gold for a new historical low, else the colour of the most notable kind."""
    if any(e.new_historical_low for e in events):
        return HISTORICAL_LOW_COLOUR
    kinds = {e.kind for e in events}
    for kind in KIND_PRIORITY:
        if kind in kinds:
            return KIND_COLOURS[kind]
    return DIGEST_COLOUR


def build_embed(app_id: int, name: str | None, events: Sequence[PriceChange]) -> dict[str, Any]:
    """One embed per app (Discord merges embeds sharing a url), one field per region."""
    observed: datetime = max(e.observed_at for e in events)
    fields = [field_for(e) for e in sorted(events, key=lambda e: e.cc)]
    embed: dict[str, Any] = {
        "title": clip(name or f"App {app_id}", MAX_TITLE),
        "url": STORE_APP_URL.format(app_id=app_id),
        "color": embed_colour(events),
        "thumbnail": {"url": HEADER_IMAGE_URL.format(app_id=app_id)},
        "footer": {
            "text": clip(f"steamprice · observed {observed:%Y-%m-%d %H:%M} UTC", MAX_FOOTER)
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
    total = text_len(embed.get("title") or "") + text_len(embed.get("description") or "")
    total += text_len((embed.get("footer") or {}).get("text") or "")
    total += text_len((embed.get("author") or {}).get("name") or "")
    for f in embed.get("fields") or []:
        total += text_len(f.get("name") or "") + text_len(f.get("value") or "")
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


def message_problems(embeds: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every Discord limit a message of these embeds would break (empty: it may be sent)."""
    problems: list[str] = []
    if not embeds:
        problems.append("no embeds")
    if len(embeds) > MAX_EMBEDS:
        problems.append(f"{len(embeds)} embeds > {MAX_EMBEDS}")
    for i, embed in enumerate(embeds):
        texts = (
            ("title", embed.get("title"), MAX_TITLE),
            ("description", embed.get("description"), MAX_DESCRIPTION),
            ("footer", (embed.get("footer") or {}).get("text"), MAX_FOOTER),
            ("author", (embed.get("author") or {}).get("name"), MAX_AUTHOR),
        )
        for what, value, limit in texts:
            if value is not None and text_len(str(value)) > limit:
                problems.append(f"embed {i} {what} > {limit}")
        fields = embed.get("fields") or []
        if len(fields) > MAX_FIELDS:
            problems.append(f"embed {i} has {len(fields)} fields > {MAX_FIELDS}")
        for j, f in enumerate(fields):
            name, value = f.get("name") or "", f.get("value") or ""
            if not name or not value:
                problems.append(f"embed {i} field {j} is empty")
            if text_len(name) > MAX_FIELD_NAME:
                problems.append(f"embed {i} field {j} name > {MAX_FIELD_NAME}")
            if text_len(value) > MAX_FIELD_VALUE:
                problems.append(f"embed {i} field {j} value > {MAX_FIELD_VALUE}")
    total = sum(embed_chars(e) for e in embeds)
    if total > MAX_TOTAL_CHARS:
        problems.append(f"{total} characters > {MAX_TOTAL_CHARS}")
    return problems


# ---------------------------------------------------------------------- digests


def _digest_region(event: PriceChange) -> str:
    cc = event.cc.upper()
    if event.new_status != "priced":
        return f"{cc} {_status_text(event.new_status)}"
    new = format_price(event.new_final, event.new_currency)
    text = f"{cc} **{new}**"
    if event.old_status == "priced" and event.old_final != event.new_final:
        text = f"{cc} {format_price(event.old_final, event.old_currency)} → **{new}**"
    d = effective_discount(event.new_initial, event.new_final, event.new_discount)
    if d:
        text += f" (-{d}%)"
        if event.discount_ends_at is not None:
            text += f" until {discord_time(event.discount_ends_at)}"
    if event.new_historical_low:
        text += f" {NEW_LOW_BADGE}"
    elif event.matches_historical_low:
        text += f" {MATCHED_LOW_BADGE}"
    return text


def digest_line(app_id: int, name: str | None, events: Sequence[PriceChange]) -> str:
    """One app on one line: linked name, then each region's new price, discount and badge."""
    title = escape_markdown(clip(name or f"App {app_id}", DIGEST_NAME_MAX))
    link = f"**[{title}]({STORE_APP_URL.format(app_id=app_id)})**"
    regions = " · ".join(_digest_region(e) for e in sorted(events, key=lambda e: e.cc))
    return clip(f"{link} · {regions}", DIGEST_LINE_MAX)


def _digest_embeds(lines: Sequence[str], groups: Sequence[AppChanges]) -> list[dict[str, Any]]:
    """Descriptions of up to 4096 units each; title on the first embed, footer on the last."""
    descriptions: list[list[str]] = [[]]
    used = 0
    for line in lines:
        n = text_len(line) + (1 if descriptions[-1] else 0)
        if used + n > MAX_DESCRIPTION:
            descriptions.append([])
            used, n = 0, text_len(line)
        descriptions[-1].append(line)
        used += n
    events = [e for g in groups for e in g.events]
    first = min(e.observed_at for e in events)
    last = max(e.observed_at for e in events)
    window = (
        f"{first:%Y-%m-%d %H:%M} to {last:%H:%M}"
        if first.date() == last.date()
        else f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}"
    )
    embeds: list[dict[str, Any]] = [
        {"description": "\n".join(d), "color": DIGEST_COLOUR} for d in descriptions
    ]
    embeds[0]["title"] = clip(
        f"Price changes · {len(groups)} apps · {len(events)} regions", _DIGEST_TITLE_RESERVE
    )
    embeds[-1]["footer"] = {
        "text": clip(f"steamprice digest · observed {window} UTC", _DIGEST_FOOTER_RESERVE)
    }
    embeds[-1]["timestamp"] = last.isoformat()
    return embeds


# ---------------------------------------------------------------------- message planning


@dataclass(frozen=True, slots=True)
class AppChanges:
    """The pending changes of one app (one region each), shown together."""

    app_id: int
    name: str | None
    events: tuple[PriceChange, ...]


def group_by_app(events: Iterable[PriceChange], names: Mapping[int, str]) -> list[AppChanges]:
    """Changes grouped per app in order of first appearance; one change per (app, region).

    Two pending changes of the same app and region (a price that moved twice) are both kept:
    the later one goes to a later group so each is shown, in order.
    """
    groups: list[list[PriceChange]] = []
    open_group: dict[int, int] = {}
    for e in events:
        index = open_group.get(e.app_id)
        if index is None or any(x.cc == e.cc for x in groups[index]):
            open_group[e.app_id] = len(groups)
            groups.append([e])
        else:
            groups[index].append(e)
    return [AppChanges(g[0].app_id, names.get(g[0].app_id), tuple(g)) for g in groups]


@dataclass(frozen=True, slots=True)
class MessagePlan:
    """The next message: its embeds and how many of the offered groups it shows."""

    embeds: list[dict[str, Any]]
    count: int
    digest: bool


def plan_message(groups: Sequence[AppChanges], *, digest: bool) -> MessagePlan:
    """The longest prefix of ``groups`` that fits one message within every Discord limit.

    Rich mode: one embed per app (10 per message). Digest mode: one line per app in embed
    descriptions, about 40-50 apps per message. At least one group is always taken.
    """
    if not groups:
        raise ValueError("plan_message needs at least one group")
    if not digest:
        embeds: list[dict[str, Any]] = []
        chars = 0
        apps: set[int] = set()
        for g in groups:
            embed = build_embed(g.app_id, g.name, g.events)
            n = embed_chars(embed)
            # Two embeds with the same url in one message: Discord would show only the first.
            if embeds and (
                len(embeds) >= MAX_EMBEDS or chars + n > MAX_TOTAL_CHARS or g.app_id in apps
            ):
                break
            embeds.append(embed)
            apps.add(g.app_id)
            chars += n
        return MessagePlan(embeds, len(embeds), False)
    budget = MAX_TOTAL_CHARS - _DIGEST_TITLE_RESERVE - _DIGEST_FOOTER_RESERVE
    lines: list[str] = []
    used = 0
    for g in groups:
        line = digest_line(g.app_id, g.name, g.events)
        n = text_len(line) + (1 if lines else 0)  # the newline joining it to the previous
        if lines and used + n > budget:
            break
        lines.append(line)
        used += n
    taken = list(groups[: len(lines)])
    embeds = _digest_embeds(lines, taken)
    while len(embeds) > MAX_EMBEDS or sum(embed_chars(e) for e in embeds) > MAX_TOTAL_CHARS:
        lines.pop()
        taken.pop()
        embeds = _digest_embeds(lines, taken)
    return MessagePlan(embeds, len(taken), True)


def changes_shown(embeds: Iterable[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """The (app id, region) pairs a message shows, rich or digest (for audits and tests)."""
    shown: list[tuple[int, str]] = []
    for embed in embeds:
        url = embed.get("url")
        if url:
            m = _APP_URL_RE.fullmatch(url)
            if m:
                app_id = int(m.group(1))
                for f in embed.get("fields") or []:
                    shown.append((app_id, str(f.get("name", ""))[:2].lower()))
            continue
        for line in str(embed.get("description") or "").splitlines():
            m = _APP_URL_RE.search(line)
            if not m:
                continue
            rest = line[line.index(m.group(0)) + len(m.group(0)) :]
            for cc in re.findall(r" · ([A-Z]{2}) ", rest + " "):
                shown.append((int(m.group(1)), cc.lower()))
    return shown
