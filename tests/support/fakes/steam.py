"""Fake Steam store, Steam Web API and SteamSpy on one local aiohttp port.

One base URL serves as ``STEAM_STORE_URL``, ``STEAM_API_URL`` and (with ``/api.php``) as
``STEAMSPY_URL``. Shapes, status codes and quirks follow ``/work/shared/docs/steam-api.md``:

``GET /api/appdetails``
    Several comma-separated ``appids`` only with ``filters=price_overview`` exactly, else HTTP 400
    with body ``null`` (also for every batch while :attr:`FakeSteam.batching_enabled` is False).
    HTTP 200 with one compact JSON object keyed by appid string, in request order: a priced app
    gives ``{"success":true,"data":{"price_overview":{...}}}``, a known app without a price in that
    region (free, unreleased, not sold there) ``{"success":true,"data":[]}``, an unknown or removed
    app ``{"success":false}``. Without the filter (single id) ``data`` is a large object shaped
    like the recorded unfiltered samples; other filters keep only the named keys of ``data`` (and
    an empty result becomes ``[]``, which is how Steam's ``data: []`` comes about).
    Throttling per client IP: a sliding window of served requests (default 200 per 300 s); over
    it HTTP 429 body ``null`` with no Retry-After and no X-RateLimit headers. A client that
    collects ``ban_after_429s`` throttled answers within one window is banned: HTTP 403 HTML
    "Access Denied" for ``ban_seconds``. Rate limiting, bans and the penalty counter apply to this
    endpoint only (the Web API and SteamSpy are other hosts in reality).

``GET /IStoreService/GetAppList/v1/``
    HTTP 403 HTML without the right ``key``. Apps sorted by appid, paged after ``last_appid``
    (``max_results`` default 10,000, capped at 50,000), pretty-printed with indent 2 like the
    recorded pages. ``have_more_results`` and ``last_appid`` appear only when more apps remain.
    A page with no apps at all is ``{"response":{}}``: the service is protobuf-backed and omits
    empty fields, so clients must not assume ``apps`` is present.

    ``price_change_number`` is undocumented; this fake ASSUMES it is a store-wide change counter:
    every real price change (``set_price``/``set_no_price`` altering the stored price, or a later
    ``load_snapshot`` changing it) takes the next number and sets ``last_modified`` to the current
    unix time, so ``if_modified_since`` (``last_modified >= it``) finds exactly the re-priced
    apps. Apps never changed keep ``catalog_epoch`` and ``price_change_number`` 0.

``GET /IStoreBrowseService/GetItems/v1/`` (discount end dates; another host in reality)
    The request is ``input_json=<compact JSON>``: ``{"ids":[{"appid":N},...],"context":
    {"language":"english","country_code":"US"},"data_request":{...}}``; POST answers 405, a
    missing or unparsable ``input_json`` 400, an absolute URL longer than ``getitems_max_url``
    (8,000 characters, the doc's safe line: 7.5 KB was seen answered, 9.2 KB refused) 400.
    HTTP 200 ``{"response":{"store_items":[...]}}`` pretty-printed like every Web API answer,
    with an ``x-eresult: 1`` header; one item per requested id, in request order (duplicates
    too; unknown ids are left out instead while :attr:`FakeSteam.getitems_omit_unknown`), and
    ``{"response":{}}`` when there is none. Items come from the same per-app state as
    ``appdetails`` in the region of ``country_code`` (``us`` when absent), protobuf-to-JSON style:
    64-bit integers (prices in cents, ``discount_amount``) are strings, unset fields absent.

    * unknown app: ``success`` 15, ``visible`` false, ``name`` "", ``store_url_path`` "app/0/",
      ``appid`` 0;
    * known, not free, not coming soon, without a price in that region: the same plus
      ``unvailable_for_country_restriction`` (sic) true (not sold there);
    * free: ``is_free`` true and no purchase option; coming soon: ``is_coming_soon`` true;
    * priced: ``best_purchase_option`` with the app's package (:meth:`FakeSteam.package_id`, the
      one the unfiltered ``appdetails`` lists), ``final_price_in_cents`` and, while discounted
      (``discount_percent`` > 0 and final < initial), ``original_price_in_cents``, ``discount_pct``
      and one ``active_discounts`` entry whose ``discount_amount`` is initial - final and whose
      ``discount_end_date`` is :meth:`FakeSteam.discount_end` (set with
      :meth:`FakeSteam.set_discount_end`, else ``default_discount_end``).

    Odd items: :meth:`FakeSteam.set_store_item` serves any item (another package, several
    discounts, missing fields, broken JSON) in place of the generated one. Rate limit per client
    IP: ``getitems_rate_limit`` (undocumented upstream; default 60 per 60 s), over it HTTP 429
    with ``x-eresult: 84`` (RateLimitExceeded). Faults (endpoint ``getitems``): the store's kinds
    with Web API bodies, plus ``eresult84`` (HTTP 200 ``{"response":{}}`` with ``x-eresult: 84``,
    how a Web API limit can look too); :meth:`FakeSteam.fail_all` makes one an outage or a storm.

``GET /api.php`` (SteamSpy)
    ``request=appdetails&appid=N`` (prices as strings in US cents from the ``us`` catalog, a
    ``tags`` object) and ``request=all&page=N`` (1,000 apps per page from page 0, sorted by appid,
    ``{}`` past the end). SteamSpy's answer to a too-fast client is undocumented: the fake answers
    HTTP 429 with a text body and records a :class:`SteamSpyViolation` (limits 1 request/s per IP,
    ``all`` 1 per 60 s).

Faults can be injected per endpoint with :meth:`FakeSteam.fail_next` or at random with
:meth:`FakeSteam.chaos`; every request is recorded in :attr:`FakeSteam.requests`.

Standalone: ``python -m tests.support.fakes.steam --port 8089 [--snapshot PATH] [--rate-limit 200/300]
[--seed-demo]`` serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gzip
import json
import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from tests.support.fakes import Clock, FakeServer, run_until_signalled

__all__ = [
    "CURRENCY_BY_CC",
    "FAULT_KINDS",
    "FakeSteam",
    "PriceTuple",
    "SteamRequest",
    "SteamSpyViolation",
    "currency_for",
    "format_price",
]

log = logging.getLogger(__name__)

# (initial, final, discount_percent, currency); prices are x100 integers in every currency.
PriceTuple = tuple[int, int, int, str]

_EURO_CCS: Final = "de fr it es nl be at fi ie pt gr sk si ee lv lt lu mt cy hr".split()
# Small on purpose: regions the tests use. Argentina and Turkey are priced in USD since 2023-11.
CURRENCY_BY_CC: Final[dict[str, str]] = {
    "us": "USD",
    "gb": "GBP",
    **{cc: "EUR" for cc in _EURO_CCS},
    "jp": "JPY",
    "kr": "KRW",
    "ar": "USD",
    "tr": "USD",
    "au": "AUD",
    "ca": "CAD",
    "br": "BRL",
    "ru": "RUB",
    "cn": "CNY",
    "ph": "PHP",
}

FAULT_KINDS: Final = frozenset(
    {"429", "403", "500", "502", "503", "timeout", "truncated", "html", "400null", "eresult84"}
)
# 403 and timeout are left out of random faults by default: each stalls a polite client for
# minutes, which turns a fuzz run into a wait.
DEFAULT_CHAOS_KINDS: Final = ("429", "500", "502", "503", "truncated", "html", "400null")
ENDPOINTS: Final = ("appdetails", "applist", "steamspy", "getitems")

DEFAULT_REGION: Final = "us"
APPLIST_DEFAULT_RESULTS: Final = 10_000
APPLIST_MAX_RESULTS: Final = 50_000
STEAMSPY_PAGE_SIZE: Final = 1_000
# 2025-08-17 00:00 UTC, the day of the first recorded snapshot: last_modified of untouched apps.
DEFAULT_CATALOG_EPOCH: Final = 1_755_388_800
# Change numbers seen in 2022 recordings were ~15.3 million; start above them.
FIRST_CHANGE_NUMBER: Final = 20_000_000

# GetItems (protobuf StoreItem): EStoreItemType and EStoreAppType numbers, success codes.
ITEM_APP, ITEM_PACKAGE, ITEM_BUNDLE = 0, 1, 2
_STORE_APP_TYPES: Final[dict[str, int]] = {
    "game": 0,
    "dlc": 4,
    "software": 6,
    "video": 7,
    "hardware": 10,
}
GETITEMS_OK, GETITEMS_NOT_FOUND = 1, 15
GETITEMS_MAX_URL: Final = 8_000
DISCOUNT_DESCRIPTION: Final = "#discount_desc_preset_special"

_NULL: Final = "null"
_UNKNOWN_ENTRY: Final = '{"success":false}'
_NO_PRICE_ENTRY: Final = '{"success":true,"data":[]}'

# Akamai's page for a banned client, as reported for store.steampowered.com.
_ACCESS_DENIED_HTML: Final = (
    "<HTML><HEAD>\n<TITLE>Access Denied</TITLE>\n</HEAD><BODY>\n<H1>Access Denied</H1>\n \n"
    "You don't have permission to access \"http&#58;&#47;&#47;store&#46;steampowered&#46;com"
    '&#47;api&#47;appdetails&#63;" on this server.<P>\n'
    "Reference&#32;&#35;18&#46;6e2d2117&#46;1700000000&#46;1a2b3c4d\n</BODY>\n</HTML>\n"
)
# What the Web API answers for a missing or wrong key.
_FORBIDDEN_KEY_HTML: Final = (
    "<html><head><title>Forbidden</title></head><body><h1>Forbidden</h1>"
    "Access is denied. Retrying will not help. Please verify your <pre>key=</pre> parameter."
    "</body></html>"
)
_STORE_ERROR_HTML: Final = (
    '<!DOCTYPE html>\n<html class="responsive" lang="en">\n<head>\n<meta charset="utf-8">\n'
    '<title>Welcome to Steam</title>\n</head>\n<body>\n<div id="error_box">\n'
    '<h2>Sorry!</h2>\n<span class="error">An error was encountered while processing your '
    "request:</span>\n</div>\n</body>\n</html>\n"
)
# The Web API's pages (api.steampowered.com); bodies are not documented, clients must check the
# status and x-eresult before the body.
_WEBAPI_HTML: Final[dict[int, str]] = {
    400: "<html><head><title>Bad Request</title></head><body><h1>Bad Request</h1>"
    "Required parameter 'input_json' is missing or could not be parsed.</body></html>",
    403: "<html><head><title>Forbidden</title></head><body><h1>Forbidden</h1>"
    "Access is denied. Retrying will not help.</body></html>",
    405: "<html><head><title>Method Not Allowed</title></head><body><h1>Method Not Allowed</h1>"
    "This API must be called with a HTTP GET request</body></html>",
    429: "<html><head><title>Too Many Requests</title></head><body><h1>Too Many Requests</h1>"
    "</body></html>",
}
_URL_TOO_LONG_HTML: Final = (
    "<HTML><HEAD><TITLE>Bad Request</TITLE></HEAD><BODY><H1>Bad Request</H1>\n"
    "Your browser sent a request that this server could not understand.</BODY></HTML>\n"
)
_5XX_HTML: Final = {
    500: "<html><head><title>500 Internal Server Error</title></head><body>"
    "<h1>Internal Server Error</h1></body></html>\n",
    502: "<HTML><HEAD><TITLE>Error</TITLE></HEAD><BODY>\nAn error occurred while processing "
    "your request.<p>\nReference&#32;&#35;97&#46;6e2d2117&#46;1700000000&#46;5e6f7a8b\n"
    "</BODY></HTML>\n",
    503: "<html><head><title>503 Service Unavailable</title></head><body>"
    "<h1>Service Unavailable</h1></body></html>\n",
}

# Keys Steam keeps for filters=basic (approximate; enough for tests that ask for it).
_BASIC_KEYS: Final = frozenset(
    "type name steam_appid required_age is_free dlc detailed_description about_the_game "
    "short_description fullgame supported_languages header_image website pc_requirements "
    "mac_requirements linux_requirements legal_notice".split()
)
_APP_TYPES: Final = ("game", "dlc", "software", "video", "hardware")
# GetAppList option per app type, with its default (only games are listed unless asked).
_INCLUDE_PARAMS: Final[dict[str, tuple[str, bool]]] = {
    "game": ("include_games", True),
    "dlc": ("include_dlc", False),
    "software": ("include_software", False),
    "video": ("include_videos", False),
    "hardware": ("include_hardware", False),
}
_TAGS: Final = (
    "Indie",
    "Action",
    "Adventure",
    "Casual",
    "Singleplayer",
    "Strategy",
    "RPG",
    "Simulation",
    "Multiplayer",
    "2D",
    "Atmospheric",
    "Puzzle",
    "Story Rich",
    "Pixel Graphics",
    "Shooter",
)


# Steam's ruble suffix, escaped because its Cyrillic letters look like Latin ones.
_RUB: Final = "\u0440\u0443\u0431."


def currency_for(cc: str) -> str:
    """Currency Steam prices region ``cc`` in (USD for regions the fake does not know)."""
    return CURRENCY_BY_CC.get(cc.lower(), "USD")


def _group(units: int, sep: str) -> str:
    return f"{units:,}".replace(",", sep)


def format_price(cents: int, currency: str) -> str:
    """A plausible ``*_formatted`` string; clients must never parse these."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    units, frac = divmod(cents, 100)
    if currency in ("JPY", "KRW"):
        # Still x100 in the JSON, but shown without decimals: JPY 968000 -> "¥ 9,680".
        symbol = "¥" if currency == "JPY" else "₩"
        return f"{sign}{symbol} {_group(units, ',')}"
    if currency == "EUR":
        return f"{sign}{_group(units, '.')},{frac:02d}€"
    if currency == "BRL":
        return f"{sign}R$ {_group(units, '.')},{frac:02d}"
    if currency == "RUB":
        shown = _group(units, " ") if frac == 0 else f"{_group(units, ' ')},{frac:02d}"
        return f"{sign}{shown} {_RUB}"
    prefix = {
        "USD": "$",
        "GBP": "£",
        "AUD": "A$ ",
        "CAD": "CDN$ ",
        "CNY": "¥ ",
        "PHP": "P",
    }.get(currency)
    if prefix is None:
        return f"{sign}{_group(units, ',')}.{frac:02d} {currency}"
    return f"{sign}{prefix}{_group(units, ',')}.{frac:02d}"


def _price_overview(price: PriceTuple) -> dict[str, Any]:
    initial, final, discount, currency = price
    return {
        "currency": currency,
        "initial": initial,
        "final": final,
        "discount_percent": discount,
        "initial_formatted": format_price(initial, currency) if discount else "",
        "final_formatted": format_price(final, currency),
    }


def _discounted(price: PriceTuple) -> bool:
    """A real cut: a percentage with ``final >= initial`` (free-to-keep promos) is none."""
    initial, final, discount, _ = price
    return discount > 0 and final < initial


_RESTRICTED_KEY_ORDER: Final = (
    "item_type",
    "id",
    "success",
    "visible",
    "unvailable_for_country_restriction",
    "name",
    "store_url_path",
    "appid",
)


def _unknown_item(item_type: int, item_id: int) -> dict[str, Any]:
    """What GetItems answers for an id it will not describe (``appid`` 0: match by ``id``)."""
    prefix = {ITEM_APP: "app", ITEM_PACKAGE: "sub", ITEM_BUNDLE: "bundle"}[item_type]
    item: dict[str, Any] = {
        "item_type": item_type,
        "id": item_id,
        "success": GETITEMS_NOT_FOUND,
        "visible": False,
        "name": "",
        "store_url_path": f"{prefix}/0/",
    }
    if item_type == ITEM_APP:
        item["appid"] = 0
    return item


def _slug(name: str) -> str:
    """The name part of a store URL path: ``Blue Fire`` -> ``Blue_Fire``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def _compact(obj: Any) -> str:
    # Steam's store answers without whitespace and with raw UTF-8 (see the JPY fixture).
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes")


def _int_param(value: str | None, default: int) -> int:
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class SteamRequest:
    """One request as the fake saw it."""

    time: float  # the fake's clock (time.monotonic by default) at arrival
    path: str
    query: dict[str, str]
    status: int
    n_appids: int  # ids in ``appids`` (appdetails) or 1 for SteamSpy appdetails, else 0
    ip: str
    fault: str | None = None  # injected fault kind, if any


@dataclass(frozen=True, slots=True)
class SteamSpyViolation:
    """A SteamSpy request sent faster than its documented limits allow."""

    time: float
    ip: str
    request: str  # the ``request=`` value
    since_last: float  # seconds since the previous served request of the same limit


class FakeSteam(FakeServer):
    """Fake store ``appdetails``, ``IStoreService/GetAppList/v1`` and SteamSpy on one port."""

    def __init__(
        self,
        *,
        rate_limit: tuple[int, float] | None = (200, 300.0),
        ban_after_429s: int | None = 20,
        ban_seconds: float = 600.0,
        penalty_seconds: float = 16.0,
        api_key: str | None = "testkey",
        timeout_delay: float = 30.0,
        latency: float = 0.0,
        steamspy_interval: float = 1.0,
        steamspy_all_interval: float = 60.0,
        catalog_epoch: int = DEFAULT_CATALOG_EPOCH,
        getitems_rate_limit: tuple[int, float] | None = (60, 60.0),
        getitems_max_url: int = GETITEMS_MAX_URL,
        default_discount_end: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """Configure limits; ``rate_limit``/``ban_after_429s`` None switch throttling/bans off.

        ``api_key`` None accepts any non-empty key. ``timeout_delay`` is how long a "timeout"
        fault stalls (make it longer than the client's timeout). ``clock`` drives every limit
        and record so tests can move time without sleeping. ``getitems_rate_limit`` None
        switches GetItems' own throttling off; ``default_discount_end`` (unix seconds) is the
        end date of discounts without one of their own (default: 17:00 UTC, 10:00 in Seattle
        when most sales flip, eight days after today).
        """
        super().__init__(clock=clock)
        self.rate_limit = rate_limit
        self.ban_after_429s = ban_after_429s
        self.ban_seconds = ban_seconds
        self.penalty_seconds = penalty_seconds
        self.api_key = api_key
        self.timeout_delay = timeout_delay
        self.latency = latency
        self.steamspy_interval = steamspy_interval
        self.steamspy_all_interval = steamspy_all_interval
        self.catalog_epoch = catalog_epoch
        # Valve has switched batching off before; False answers every batch with 400 null.
        self.batching_enabled = True
        self.getitems_rate_limit = getitems_rate_limit
        self.getitems_max_url = getitems_max_url
        if default_discount_end is None:
            today = int(time.time()) // 86_400 * 86_400
            default_discount_end = today + 8 * 86_400 + 17 * 3_600
        self.default_discount_end = default_discount_end
        # One caller reports GetItems leaving unknown ids out instead of answering success 15.
        self.getitems_omit_unknown = False

        # Catalog. _meta holds every known app (it is the "known" set) with
        # (last_modified, price_change_number); untouched apps share one tuple.
        self._meta: dict[int, tuple[int, int]] = {}
        self._prices: dict[str, dict[int, PriceTuple]] = {}
        self._names: dict[int, str] = {}
        self._types: dict[int, str] = {}
        self._free: set[int] = set()
        # (app_id, cc or "*") -> raw entry text served verbatim.
        self._raw: dict[tuple[int, str], str] = {}
        self._change_number = FIRST_CHANGE_NUMBER
        self._sorted_ids: list[int] | None = None
        # Many apps share a price; caching by the tuple needs no invalidation.
        self._entry_cache: dict[PriceTuple, str] = {}
        # GetItems: (app_id, cc) -> discount end (unix seconds); (app_id, cc or "*") -> an item
        # served verbatim; apps announced but not released.
        self._discount_ends: dict[tuple[int, str], int] = {}
        self._store_items: dict[tuple[int, str], str] = {}
        self._coming_soon: set[int] = set()

        # Faults.
        self._faults: dict[str, deque[str]] = {e: deque() for e in ENDPOINTS}
        # Endpoint -> the fault every request gets until cleared (an outage, a 429 storm).
        self._fail_all: dict[str, str] = {}
        self._chaos: dict[str, tuple[float, tuple[str, ...], random.Random]] = {}

        # Limiter state per client IP.
        self._served: dict[str, deque[float]] = {}
        self._throttled: dict[str, deque[float]] = {}
        self._last_429: dict[str, float] = {}
        self._banned_until: dict[str, float] = {}
        self._spy_last: dict[str, float] = {}
        self._spy_last_all: dict[str, float] = {}
        self._getitems_served: dict[str, deque[float]] = {}

        # Recording. requests covers every endpoint; the counters cover /api/appdetails only,
        # since the store is the host whose limits the benchmarks check.
        self.requests: list[SteamRequest] = []
        self.count_429 = 0
        self.count_403 = 0
        self.requests_during_penalty = 0
        self.steamspy_violations: list[SteamSpyViolation] = []
        # GetItems' own throttled answers (its limiter and injected 429/eresult84 faults).
        self.getitems_429 = 0

    # ------------------------------------------------------------------ catalog API

    def set_price(
        self,
        app_id: int,
        cc: str,
        initial: int,
        final: int,
        discount_percent: int,
        currency: str | None = None,
    ) -> None:
        """Price ``app_id`` in region ``cc`` (x100 integers); bumps change data if it changed."""
        cc = cc.lower()
        price: PriceTuple = (
            int(initial),
            int(final),
            int(discount_percent),
            currency or currency_for(cc),
        )
        region = self._prices.setdefault(cc, {})
        changed = region.get(app_id) != price
        region[app_id] = price
        self._free.discard(app_id)
        if not _discounted(price):
            # The next discount gets an end date of its own (the default unless one is set).
            self._discount_ends.pop((app_id, cc), None)
        if app_id not in self._meta:
            self._sorted_ids = None
            changed = True
        if changed:
            self._bump(app_id)

    def set_no_price(self, app_id: int, cc: str | None = None, *, free: bool = False) -> None:
        """Known app without a price in ``cc`` (None = every region): served as ``data: []``.

        ``free`` only changes the unfiltered view (``is_free``) and SteamSpy; the batched answer
        cannot tell free, unreleased and not-sold-here apart, exactly like Steam.
        """
        regions = self._prices.values() if cc is None else [self._prices.get(cc.lower(), {})]
        changed = False
        for region in regions:
            changed |= region.pop(app_id, None) is not None
        if free:
            self._free.add(app_id)
        if app_id not in self._meta:
            self._sorted_ids = None
            changed = True
        if changed:
            self._bump(app_id)

    def remove(self, app_id: int) -> None:
        """Forget ``app_id``: ``success:false`` everywhere and gone from the app list."""
        if self._meta.pop(app_id, None) is not None:
            self._sorted_ids = None
        for region in self._prices.values():
            region.pop(app_id, None)
        self._free.discard(app_id)
        self._coming_soon.discard(app_id)
        for key in [k for k in self._raw if k[0] == app_id]:
            del self._raw[key]
        for key in [k for k in self._store_items if k[0] == app_id]:
            del self._store_items[key]
        for key in [k for k in self._discount_ends if k[0] == app_id]:
            del self._discount_ends[key]

    def set_name(self, app_id: int, name: str) -> None:
        """Name shown by the app list, unfiltered appdetails and SteamSpy (makes the app known)."""
        self._names[app_id] = name
        self._ensure_known(app_id)

    def set_type(self, app_id: int, app_type: str) -> None:
        """``game`` (default), ``dlc``, ``software``, ``video`` or ``hardware``."""
        if app_type not in _APP_TYPES:
            raise ValueError(f"app_type must be one of {_APP_TYPES}, not {app_type!r}")
        self._types[app_id] = app_type
        self._ensure_known(app_id)

    def set_raw_entry(self, app_id: int, cc: str | None, raw_json_text: str | None) -> None:
        """Serve ``raw_json_text`` verbatim as the appdetails entry of ``app_id`` in ``cc``.

        For odd shapes such as ``{"success":true}`` or ``{"success":true,"data":{}}``.
        ``cc`` None = every region; ``raw_json_text`` None removes the override. The text is not
        checked: invalid JSON spoils the whole body, as a broken upstream would.
        """
        key = (app_id, "*" if cc is None else cc.lower())
        if raw_json_text is None:
            self._raw.pop(key, None)
        else:
            self._raw[key] = raw_json_text

    def set_coming_soon(self, app_id: int, coming_soon: bool = True) -> None:
        """Announced, not released: GetItems says ``is_coming_soon`` (appdetails is unchanged)."""
        if coming_soon:
            self._coming_soon.add(app_id)
        else:
            self._coming_soon.discard(app_id)
        self._ensure_known(app_id)

    def package_id(self, app_id: int) -> int:
        """The package ``appdetails`` prices ``app_id`` with (listed in unfiltered ``packages``)."""
        return 100_000 + app_id % 900_000

    def set_discount_end(self, app_id: int, end: int | None, cc: str = DEFAULT_REGION) -> None:
        """When the discount of ``app_id`` in ``cc`` ends (unix seconds); None = the default.

        Served by GetItems while the app is discounted there; moving it is an extended sale. A
        price without a discount (:meth:`set_price`) forgets it.
        """
        key = (app_id, cc.lower())
        if end is None:
            self._discount_ends.pop(key, None)
        else:
            self._discount_ends[key] = int(end)

    def discount_end(self, app_id: int, cc: str = DEFAULT_REGION) -> int | None:
        """The ``discount_end_date`` GetItems serves for ``app_id`` in ``cc`` (None: no discount)."""
        price = self.get_price(app_id, cc)
        if price is None or not _discounted(price):
            return None
        return self._discount_ends.get((app_id, cc.lower()), self.default_discount_end)

    def store_item(self, app_id: int, cc: str = DEFAULT_REGION) -> dict[str, Any]:
        """The GetItems item generated for ``app_id`` in ``cc`` (a copy, to edit and serve back
        with :meth:`set_store_item`); overrides are not applied."""
        return self._generated_item(app_id, cc.lower())

    def set_store_item(
        self, app_id: int, cc: str | None, item: dict[str, Any] | str | None
    ) -> None:
        """Serve ``item`` as the GetItems item of ``app_id`` in ``cc`` (None = every region).

        A dict is serialised like the rest of the answer, a str is served verbatim (broken JSON
        spoils the whole body, as a broken upstream would), None removes the override.
        """
        key = (app_id, "*" if cc is None else cc.lower())
        if item is None:
            self._store_items.pop(key, None)
        elif isinstance(item, str):
            self._store_items[key] = item
        else:
            self._store_items[key] = json.dumps(item, indent=2, ensure_ascii=False)

    def get_price(self, app_id: int, cc: str = DEFAULT_REGION) -> PriceTuple | None:
        """The stored ``(initial, final, discount_percent, currency)`` or None."""
        return self._prices.get(cc.lower(), {}).get(app_id)

    def app_meta(self, app_id: int) -> tuple[int, int] | None:
        """``(last_modified, price_change_number)`` of a known app, else None."""
        return self._meta.get(app_id)

    @property
    def app_count(self) -> int:
        """Number of known apps."""
        return len(self._meta)

    def load_snapshot(self, path: str | Path, cc: str = DEFAULT_REGION) -> int:
        """Merge a SteamSpy snapshot CSV (``appid,discount,price``; gzip or plain) into ``cc``.

        ``price`` is the FINAL price in US cents; empty = no data and 0 = free, both served as
        ``data: []``. ``initial = round(final / (1 - discount/100))`` for 0 < discount < 100,
        else ``initial = final`` (discount 100 with a price is the free-to-keep oddity). Loading
        into an empty catalog leaves change data at its defaults; a later load bumps apps that
        are new or whose price changed. Apps absent from the file are left as they were.
        Returns the number of rows read.
        """
        cc = cc.lower()
        currency = currency_for(cc)
        region = self._prices.setdefault(cc, {})
        meta = self._meta
        free = self._free
        initial_load = not meta
        default_meta = (self.catalog_epoch, 0)
        bumped: list[int] = []
        rows = 0
        path = Path(path)
        with path.open("rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            header = [c.strip().lower() for c in fh.readline().rstrip("\r\n").split(",")]
            try:
                i_app, i_disc, i_price = (header.index(c) for c in ("appid", "discount", "price"))
            except ValueError as exc:
                raise ValueError(f"{path}: expected columns appid,discount,price") from exc
            width = max(i_app, i_disc, i_price) + 1
            # Hot loop over ~261k rows: locals only, one tuple per priced row.
            for line in fh:
                parts = line.rstrip("\r\n").split(",")
                if len(parts) < width or not parts[i_app]:
                    continue
                rows += 1
                app_id = int(parts[i_app])
                price_s = parts[i_price]
                new: PriceTuple | None = None
                if price_s:
                    final = int(price_s)
                    if final == 0:
                        free.add(app_id)
                    else:
                        disc_s = parts[i_disc]
                        discount = int(disc_s) if disc_s else 0
                        if 0 < discount < 100:
                            initial = round(final / (1 - discount / 100))
                        else:
                            initial = final
                        new = (initial, final, discount, currency)
                        free.discard(app_id)
                if new is None:
                    old = region.pop(app_id, None)
                else:
                    old = region.get(app_id)
                    region[app_id] = new
                if app_id not in meta:
                    meta[app_id] = default_meta
                    if not initial_load:
                        bumped.append(app_id)
                elif old != new:
                    bumped.append(app_id)
        self._sorted_ids = None
        for app_id in bumped:
            self._bump(app_id)
        return rows

    def _ensure_known(self, app_id: int) -> None:
        if app_id not in self._meta:
            self._meta[app_id] = (self.catalog_epoch, 0)
            self._sorted_ids = None

    def _bump(self, app_id: int) -> None:
        self._change_number += 1
        self._meta[app_id] = (int(time.time()), self._change_number)

    def _ids_sorted(self) -> list[int]:
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self._meta)
        return self._sorted_ids

    # ------------------------------------------------------------------ fault API

    def fail_next(self, n: int, kind: str, endpoint: str = "appdetails") -> None:
        """Answer the next ``n`` requests to ``endpoint`` with fault ``kind`` (queued in order).

        Kinds: 429, 403, 500, 502, 503, timeout (stall ``timeout_delay`` s, then answer
        normally), truncated (200 with the JSON cut in the middle), html (200 with an HTML page),
        400null, eresult84 (GetItems: 200 ``{"response":{}}`` with ``x-eresult: 84``).
        Endpoints: appdetails, applist, steamspy, getitems. Store faults are applied after the
        rate limiter, so throttled or banned requests do not consume them.
        """
        self._check_fault(kind, endpoint)
        self._faults[endpoint].extend([kind] * n)

    def fail_all(self, kind: str | None, endpoint: str = "getitems") -> None:
        """Answer every request to ``endpoint`` with fault ``kind`` until called with None.

        An outage (``503``, ``timeout``) or a storm (``429``); it goes before queued faults.
        """
        if kind is None:
            self._fail_all.pop(endpoint, None)
            return
        self._check_fault(kind, endpoint)
        self._fail_all[endpoint] = kind

    def chaos(
        self,
        rate: float = 0.2,
        kinds: Sequence[str] | None = None,
        seed: int = 1,
        endpoint: str = "appdetails",
    ) -> None:
        """Fail a random ``rate`` of requests with one of ``kinds``; ``rate=0`` switches it off.

        Deterministic for a given ``seed`` and request order. Queued ``fail_next`` faults go
        first. Default kinds leave out 403 and timeout (see ``DEFAULT_CHAOS_KINDS``).
        """
        chosen = tuple(kinds) if kinds is not None else DEFAULT_CHAOS_KINDS
        for kind in chosen:
            self._check_fault(kind, endpoint)
        if rate <= 0:
            self._chaos.pop(endpoint, None)
        else:
            self._chaos[endpoint] = (rate, chosen, random.Random(seed))

    @staticmethod
    def _check_fault(kind: str, endpoint: str) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS}")

    def _take_fault(self, endpoint: str) -> str | None:
        forced = self._fail_all.get(endpoint)
        if forced is not None:
            return forced
        queue = self._faults[endpoint]
        if queue:
            return queue.popleft()
        chaos = self._chaos.get(endpoint)
        if chaos is not None:
            rate, kinds, rng = chaos
            if rng.random() < rate:
                return rng.choice(kinds)
        return None

    def is_banned(self, ip: str = "127.0.0.1") -> bool:
        """Whether ``ip`` is currently banned (403 Access Denied)."""
        return self._banned_until.get(ip, -math.inf) > self.clock()

    def reset_stats(self) -> None:
        """Clear recorded requests and counters (not limiter state, catalog or faults)."""
        self.requests.clear()
        self.count_429 = 0
        self.count_403 = 0
        self.requests_during_penalty = 0
        self.steamspy_violations.clear()
        self.getitems_429 = 0

    # ------------------------------------------------------------------ HTTP

    def build_app(self) -> web.Application:
        # aiohttp refuses request lines over 8,190 bytes on its own; GetItems' URL limit is the
        # fake's to enforce (and record), so the parser must let longer ones through.
        app = web.Application(handler_args={"max_line_size": 65_536})
        # Every method: the handler answers anything but GET with 405.
        app.router.add_route("*", "/IStoreBrowseService/GetItems/v1/", self._handle_getitems)
        app.router.add_route("*", "/IStoreBrowseService/GetItems/v1", self._handle_getitems)
        app.router.add_get("/api/appdetails", self._handle_appdetails)
        app.router.add_get("/api/appdetails/", self._handle_appdetails)
        app.router.add_get("/IStoreService/GetAppList/v1/", self._handle_applist)
        app.router.add_get("/IStoreService/GetAppList/v1", self._handle_applist)
        app.router.add_get("/api.php", self._handle_steamspy)
        # Everything else (ISteamApps/GetAppList/v2 was removed in 2025) is a recorded 404.
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        return app

    async def _finish(
        self,
        request: web.Request,
        arrived: float,
        response: web.Response,
        n_appids: int = 0,
        fault: str | None = None,
    ) -> web.Response:
        self.requests.append(
            SteamRequest(
                time=arrived,
                path=request.path,
                query=dict(request.query),
                status=response.status,
                n_appids=n_appids,
                ip=request.remote or "unknown",
                fault=fault,
            )
        )
        await self._sleep(self.latency)
        return response

    @staticmethod
    def _json(status: int, text: str) -> web.Response:
        return web.Response(status=status, text=text, content_type="application/json")

    @staticmethod
    def _html(status: int, text: str) -> web.Response:
        return web.Response(status=status, text=text, content_type="text/html")

    # appdetails ---------------------------------------------------------

    async def _handle_appdetails(self, request: web.Request) -> web.Response:
        arrived = self.clock()
        ip = request.remote or "unknown"
        query = request.query
        ids = [t.strip() for t in query.get("appids", "").split(",") if t.strip()]
        n = len(ids)

        banned = self._banned_until.get(ip, -math.inf) > arrived
        last_429 = self._last_429.get(ip)
        if banned or (last_429 is not None and arrived - last_429 < self.penalty_seconds):
            self.requests_during_penalty += 1
        if banned:
            self.count_403 += 1
            return await self._finish(request, arrived, self._html(403, _ACCESS_DENIED_HTML), n)

        if self.rate_limit is not None:
            limit, window = self.rate_limit
            served = self._served.setdefault(ip, deque())
            while served and served[0] <= arrived - window:
                served.popleft()
            if len(served) >= limit:
                self._note_429(ip, arrived, throttled=True)
                return await self._finish(request, arrived, self._json(429, _NULL), n)
            served.append(arrived)

        fault = self._take_fault("appdetails")
        status, body = self._appdetails_body(ids, query)
        if fault is None:
            return await self._finish(request, arrived, self._json(status, body), n)
        response = await self._fault_response(fault, status, body)
        if response.status == 429:
            self._note_429(ip, arrived, throttled=False)
        elif response.status == 403:
            self.count_403 += 1
        return await self._finish(request, arrived, response, n, fault)

    def _note_429(self, ip: str, now: float, *, throttled: bool) -> None:
        self.count_429 += 1
        self._last_429[ip] = now
        # Only the limiter's own 429s lead to a ban: the client "keeps sending while throttled".
        if not throttled or self.ban_after_429s is None or self.rate_limit is None:
            return
        window = self.rate_limit[1]
        hits = self._throttled.setdefault(ip, deque())
        hits.append(now)
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= self.ban_after_429s:
            self._banned_until[ip] = now + self.ban_seconds
            hits.clear()

    async def _fault_response(self, fault: str, status: int, body: str) -> web.Response:
        if fault == "429":
            return self._json(429, _NULL)
        if fault == "400null":
            return self._json(400, _NULL)
        if fault == "403":
            return self._html(403, _ACCESS_DENIED_HTML)
        if fault in ("500", "502", "503"):
            code = int(fault)
            return self._html(code, _5XX_HTML[code])
        if fault == "html":
            return self._html(200, _STORE_ERROR_HTML)
        if fault == "truncated":
            # Content-Length matches the cut body, so only the JSON parse fails.
            cut = body[: max(1, len(body) // 2)]
            return self._json(status, cut)
        # timeout: stall past the client's timeout; whoever is still listening gets the answer.
        await self._sleep(self.timeout_delay)
        return self._json(status, body)

    def price_overview_answer(self, app_ids: list[int], cc: str = DEFAULT_REGION) -> bytes:
        """What ``appdetails?appids=...&filters=price_overview&cc=`` answers now, without HTTP.

        The same bytes the server sends (no limits or faults): the pure pipeline tests run real
        catalogs through the parsing code with it.
        """
        status, body = self._appdetails_body(
            [str(a) for a in app_ids], {"filters": "price_overview", "cc": cc}
        )
        assert status == 200, body
        return body.encode()

    def _appdetails_body(self, ids: list[str], query: Any) -> tuple[int, str]:
        filters = query.get("filters")
        cc = (query.get("cc") or DEFAULT_REGION).lower()
        if not ids:
            return 400, _NULL
        if len(ids) > 1:
            # Batching works only with exactly filters=price_overview, and only while enabled.
            if filters != "price_overview" or not self.batching_enabled:
                return 400, _NULL
        parts: dict[str, str] = {}
        for token in ids:
            key, entry = self._entry(token, cc, filters)
            # Duplicate ids collapse into one key, as a JSON object must.
            parts.setdefault(key, entry)
        return 200, "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in parts.items()) + "}"

    def _entry(self, token: str, cc: str, filters: str | None) -> tuple[str, str]:
        try:
            app_id = int(token)
        except ValueError:
            return token, _UNKNOWN_ENTRY
        key = str(app_id)
        raw = self._raw.get((app_id, cc))
        if raw is None:
            raw = self._raw.get((app_id, "*"))
        if raw is not None:
            return key, raw
        if app_id not in self._meta:
            return key, _UNKNOWN_ENTRY
        price = self._prices.get(cc, {}).get(app_id)
        if filters == "price_overview":
            if price is None:
                return key, _NO_PRICE_ENTRY
            cached = self._entry_cache.get(price)
            if cached is None:
                cached = _compact(
                    {"success": True, "data": {"price_overview": _price_overview(price)}}
                )
                self._entry_cache[price] = cached
            return key, cached
        data: dict[str, Any] = self._full_data(app_id, price)
        if filters:
            wanted = {f.strip() for f in filters.split(",") if f.strip()}
            if "basic" in wanted:
                wanted |= _BASIC_KEYS
            data = {k: v for k, v in data.items() if k in wanted}
        # PHP serialises an empty array as [] -- the origin of Steam's "data": [].
        return key, _compact({"success": True, "data": data or []})

    def app_name(self, app_id: int) -> str:
        """Name of ``app_id`` (a generated one unless set with :meth:`set_name`)."""
        return self._names.get(app_id) or f"Fake App {app_id}"

    def _full_data(self, app_id: int, price: PriceTuple | None) -> dict[str, Any]:
        """Unfiltered ``data``, with the keys and key order of the recorded samples."""
        name = self.app_name(app_id)
        app_type = self._types.get(app_id, "game")
        is_free = app_id in self._free
        assets = f"https://shared.akamai.steamstatic.com/store_item_assets/steam/apps/{app_id}"
        developer = f"Studio {app_id % 97}"
        description = f"{name} is a fake {app_type} served by tests.support.fakes.steam."
        data: dict[str, Any] = {
            "type": app_type,
            "name": name,
            "steam_appid": app_id,
            # Steam mixes types here: "16" (string) on some apps, 0 (int) on most.
            "required_age": 0,
            "is_free": is_free,
            "detailed_description": description,
            "about_the_game": description,
            "short_description": description,
            "supported_languages": "English<strong>*</strong><br><strong>*</strong>"
            "languages with full audio support",
            "header_image": f"{assets}/header.jpg?t=1700000000",
            "website": None,
            "pc_requirements": {
                "minimum": '<strong>Minimum:</strong><br><ul class="bb_ul"><li>'
                "<strong>OS:</strong> Windows 10<br></li></ul>"
            },
            # An absent requirement is an empty array, not an object (PHP again).
            "mac_requirements": [],
            "linux_requirements": [],
            "developers": [developer],
            "publishers": [developer],
        }
        if price is not None:
            data["price_overview"] = _price_overview(price)
        package_id = self.package_id(app_id)
        if price is not None or is_free:
            data["packages"] = [package_id]
        data["platforms"] = {"windows": True, "mac": False, "linux": False}
        data["categories"] = [{"id": 2, "description": "Single-player"}]
        data["genres"] = [{"id": "1", "description": "Action"}]
        data["release_date"] = {"coming_soon": False, "date": "7 Aug, 2020"}
        data["support_info"] = {"url": "", "email": ""}
        data["background"] = f"{assets}/page_bg_generated_v6b.jpg?t=1700000000"
        data["content_descriptors"] = {"ids": [], "notes": None}
        return data

    # GetAppList ---------------------------------------------------------

    async def _handle_applist(self, request: web.Request) -> web.Response:
        arrived = self.clock()
        query = request.query
        key = query.get("key", "")
        if not key or (self.api_key is not None and key != self.api_key):
            return await self._finish(request, arrived, self._html(403, _FORBIDDEN_KEY_HTML))
        fault = self._take_fault("applist")
        body = self._applist_body(query)
        if fault is None:
            return await self._finish(request, arrived, self._json(200, body))
        response = await self._fault_response(fault, 200, body)
        return await self._finish(request, arrived, response, fault=fault)

    def _applist_body(self, query: Any) -> str:
        max_results = _int_param(query.get("max_results"), APPLIST_DEFAULT_RESULTS)
        if max_results <= 0:
            max_results = APPLIST_DEFAULT_RESULTS
        max_results = min(max_results, APPLIST_MAX_RESULTS)
        last_appid = _int_param(query.get("last_appid"), 0)
        since = _int_param(query.get("if_modified_since"), 0)
        types = {
            app_type
            for app_type, (param, default) in _INCLUDE_PARAMS.items()
            if _truthy(query.get(param), default)
        }
        app_types = self._types
        meta = self._meta

        def wanted(app_id: int) -> bool:
            return meta[app_id][0] >= since and app_types.get(app_id, "game") in types

        ids = self._ids_sorted()
        i = bisect.bisect_right(ids, last_appid)
        apps: list[dict[str, Any]] = []
        while i < len(ids) and len(apps) < max_results:
            app_id = ids[i]
            i += 1
            if wanted(app_id):
                last_modified, change_number = meta[app_id]
                apps.append(
                    {
                        "appid": app_id,
                        "name": self.app_name(app_id),
                        "last_modified": last_modified,
                        "price_change_number": change_number,
                    }
                )
        more = any(wanted(app_id) for app_id in ids[i:]) if apps else False
        response: dict[str, Any] = {}
        if apps:
            response["apps"] = apps
        if more:
            response["have_more_results"] = True
            response["last_appid"] = apps[-1]["appid"]
        return json.dumps({"response": response}, indent=2, ensure_ascii=False)

    # GetItems -----------------------------------------------------------

    async def _handle_getitems(self, request: web.Request) -> web.Response:
        arrived = self.clock()
        ip = request.remote or "unknown"
        if request.method != "GET":
            return await self._finish(request, arrived, self._webapi_html(405))
        payload: Any = None
        try:
            payload = json.loads(request.query["input_json"])
        except (KeyError, ValueError):
            pass
        ids = payload.get("ids") if isinstance(payload, dict) else None
        n = len(ids) if isinstance(ids, list) else 0
        url_length = len(f"{request.scheme}://{request.host}{request.raw_path}")
        if url_length > self.getitems_max_url:
            response = self._html(400, _URL_TOO_LONG_HTML)
            return await self._finish(request, arrived, response, n)
        if not isinstance(ids, list):
            return await self._finish(request, arrived, self._webapi_html(400))

        if self.getitems_rate_limit is not None:
            limit, window = self.getitems_rate_limit
            served = self._getitems_served.setdefault(ip, deque())
            while served and served[0] <= arrived - window:
                served.popleft()
            if len(served) >= limit:
                self.getitems_429 += 1
                return await self._finish(request, arrived, self._getitems_fault("429", ""), n)
            served.append(arrived)

        context = payload.get("context")
        country = context.get("country_code") if isinstance(context, dict) else None
        cc = country.lower() if isinstance(country, str) and country else DEFAULT_REGION
        data_request = payload.get("data_request")
        all_options = isinstance(data_request, dict) and bool(
            data_request.get("include_all_purchase_options")
        )
        body = self._getitems_body(ids, cc, all_options)
        fault = self._take_fault("getitems")
        if fault is None:
            return await self._finish(request, arrived, self._webapi_json(200, body), n)
        if fault in ("429", "eresult84"):
            self.getitems_429 += 1
        if fault == "timeout":
            await self._sleep(self.timeout_delay)
            return await self._finish(request, arrived, self._webapi_json(200, body), n, fault)
        return await self._finish(request, arrived, self._getitems_fault(fault, body), n, fault)

    def _getitems_fault(self, fault: str, body: str) -> web.Response:
        if fault == "429":
            return self._webapi_html(429, eresult=84)
        if fault == "eresult84":
            return self._webapi_json(200, '{\n  "response": {}\n}', eresult=84)
        if fault in ("403", "400null"):
            return self._webapi_html(403 if fault == "403" else 400)
        if fault in ("500", "502", "503"):
            code = int(fault)
            return self._html(code, _5XX_HTML[code])
        if fault == "html":
            return self._html(200, _STORE_ERROR_HTML)
        assert fault == "truncated", fault
        return self._webapi_json(200, body[: max(1, len(body) // 2)])

    @staticmethod
    def _webapi_json(status: int, text: str, eresult: int = 1) -> web.Response:
        return web.Response(
            status=status,
            text=text,
            content_type="application/json",
            headers={"x-eresult": str(eresult)},
        )

    @staticmethod
    def _webapi_html(status: int, eresult: int | None = None) -> web.Response:
        headers = {"x-eresult": str(eresult)} if eresult is not None else None
        return web.Response(
            status=status, text=_WEBAPI_HTML[status], content_type="text/html", headers=headers
        )

    def _getitems_body(self, ids: list[Any], cc: str, all_options: bool) -> str:
        """``{"response":{"store_items":[...]}}`` as the Web API prints it (indent 2)."""
        pieces: list[str] = []
        for wanted in ids:
            piece = self._item_text(wanted, cc, all_options)
            if piece is not None:
                pieces.append(piece)
        if not pieces:
            return '{\n  "response": {}\n}'
        # Items are nested three levels deep in the answer: indent every line but the first.
        items = ",\n".join("      " + p.replace("\n", "\n      ") for p in pieces)
        return '{\n  "response": {\n    "store_items": [\n' + items + "\n    ]\n  }\n}"

    def _item_text(self, wanted: Any, cc: str, all_options: bool) -> str | None:
        if not isinstance(wanted, dict):
            return None
        for key, item_type in (("packageid", ITEM_PACKAGE), ("bundleid", ITEM_BUNDLE)):
            other = wanted.get(key)
            if isinstance(other, int) and not isinstance(other, bool):
                # Only apps are modelled: packages and bundles are unknown.
                if self.getitems_omit_unknown:
                    return None
                return json.dumps(_unknown_item(item_type, other), indent=2)
        app_id = wanted.get("appid")
        if not isinstance(app_id, int) or isinstance(app_id, bool):
            return None
        override = self._store_items.get((app_id, cc)) or self._store_items.get((app_id, "*"))
        if override is not None:
            return override
        if app_id not in self._meta and self.getitems_omit_unknown:
            return None
        item = self._generated_item(app_id, cc)
        if all_options and "best_purchase_option" in item:
            item["purchase_options"] = [item["best_purchase_option"]]
        return json.dumps(item, indent=2, ensure_ascii=False)

    def _generated_item(self, app_id: int, cc: str) -> dict[str, Any]:
        if app_id not in self._meta:
            return _unknown_item(ITEM_APP, app_id)
        price = self._prices.get(cc, {}).get(app_id)
        free = app_id in self._free
        coming_soon = app_id in self._coming_soon
        if price is None and not free and not coming_soon:
            # Known, yet no price here and nothing else explains it: not sold in this region.
            item = _unknown_item(ITEM_APP, app_id)
            item["unvailable_for_country_restriction"] = True
            # Key order of the protobuf fields: the flag (5) comes before name (6).
            return {k: item[k] for k in _RESTRICTED_KEY_ORDER}
        name = self.app_name(app_id)
        item = {
            "item_type": ITEM_APP,
            "id": app_id,
            "success": GETITEMS_OK,
            "visible": True,
            "name": name,
            "store_url_path": f"app/{app_id}/{_slug(name)}",
            "appid": app_id,
            "type": _STORE_APP_TYPES.get(self._types.get(app_id, "game"), 0),
        }
        if free:
            item["is_free"] = True
        if coming_soon:
            item["is_coming_soon"] = True
        if price is not None:
            item["best_purchase_option"] = self._purchase_option(app_id, cc, name, price)
        return item

    def _purchase_option(
        self, app_id: int, cc: str, name: str, price: PriceTuple
    ) -> dict[str, Any]:
        initial, final, discount, currency = price
        discounted = _discounted(price)
        option: dict[str, Any] = {
            "packageid": self.package_id(app_id),
            "purchase_option_name": name,
            "final_price_in_cents": str(final),
        }
        if discounted:
            option["original_price_in_cents"] = str(initial)
        option["formatted_final_price"] = format_price(final, currency)
        if discounted:
            option["formatted_original_price"] = format_price(initial, currency)
            option["discount_pct"] = discount
            end = self._discount_ends.get((app_id, cc), self.default_discount_end)
            option["active_discounts"] = [
                {
                    "discount_amount": str(initial - final),
                    "discount_description": DISCOUNT_DESCRIPTION,
                    "discount_end_date": end,
                }
            ]
        option["user_can_purchase_as_gift"] = True
        return option

    # SteamSpy -----------------------------------------------------------

    async def _handle_steamspy(self, request: web.Request) -> web.Response:
        arrived = self.clock()
        ip = request.remote or "unknown"
        query = request.query
        kind = query.get("request", "")
        n = 1 if kind == "appdetails" else 0

        since_any = arrived - self._spy_last.get(ip, -math.inf)
        since_all = arrived - self._spy_last_all.get(ip, -math.inf)
        too_fast = since_any < self.steamspy_interval
        if kind == "all" and since_all < self.steamspy_all_interval:
            too_fast = True
            since_any = min(since_any, since_all)
        if too_fast:
            self.steamspy_violations.append(SteamSpyViolation(arrived, ip, kind, since_any))
            text = "Too many requests: SteamSpy allows 1 request per second (all: 1 per minute)."
            return await self._finish(request, arrived, web.Response(status=429, text=text), n)
        self._spy_last[ip] = arrived
        if kind == "all":
            self._spy_last_all[ip] = arrived

        if kind == "appdetails":
            app_id = _int_param(query.get("appid"), 0)
            body = _compact(self._spy_details(app_id, with_tags=True))
        elif kind == "all":
            page = _int_param(query.get("page"), 0)
            ids = self._ids_sorted()
            start = page * STEAMSPY_PAGE_SIZE
            chunk = ids[start : start + STEAMSPY_PAGE_SIZE] if page >= 0 else []
            body = _compact({str(a): self._spy_details(a, with_tags=False) for a in chunk})
        else:
            text = f"Fake SteamSpy: request={kind!r} is not implemented."
            return await self._finish(request, arrived, web.Response(status=400, text=text), n)

        fault = self._take_fault("steamspy")
        if fault is None:
            return await self._finish(request, arrived, self._json(200, body), n)
        response = await self._fault_response(fault, 200, body)
        return await self._finish(request, arrived, response, n, fault)

    def _spy_details(self, app_id: int, *, with_tags: bool) -> dict[str, Any]:
        known = app_id in self._meta
        price = self._prices.get("us", {}).get(app_id)
        owners_low = (10 ** (app_id % 5 + 3)) if known else 0
        owners = f"{owners_low:,} .. {owners_low * 2 if owners_low else 20_000:,}"
        developer = f"Studio {app_id % 97}" if known else ""
        details: dict[str, Any] = {
            "appid": app_id,
            "name": self.app_name(app_id) if known else None,
            "developer": developer,
            "publisher": developer,
            "score_rank": "",
            "positive": (app_id * 7) % 50_000 if known else 0,
            "negative": (app_id * 3) % 5_000 if known else 0,
            "userscore": 0,
            "owners": owners,
            "average_forever": 0,
            "average_2weeks": 0,
            "median_forever": 0,
            "median_2weeks": 0,
            # Strings in US cents, unlike every other number here.
            "price": str(price[1]) if price else ("0" if known else None),
            "initialprice": str(price[0]) if price else ("0" if known else None),
            "discount": str(price[2]) if price else ("0" if known else None),
            "ccu": app_id % 1_000 if known else 0,
        }
        if with_tags:
            details["languages"] = "English" if known else None
            details["genre"] = "Action" if known else None
            if known:
                first = app_id % len(_TAGS)
                tags = [_TAGS[(first + k) % len(_TAGS)] for k in range(3)]
                details["tags"] = {tag: 300 - 100 * k for k, tag in enumerate(tags)}
            else:
                details["tags"] = []  # PHP's empty array again
        return details

    # other --------------------------------------------------------------

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        arrived = self.clock()
        response = self._html(404, "<html><body><h1>Not Found</h1></body></html>")
        return await self._finish(request, arrived, response)


# ---------------------------------------------------------------------- standalone

# Famous apps for demos: (app_id, name, initial, final, discount) in US cents; None = free.
DEMO_APPS: Final[tuple[tuple[int, str, int | None, int | None, int], ...]] = (
    (10, "Counter-Strike", 999, 249, 75),
    (20, "Team Fortress Classic", 499, 499, 0),
    (30, "Day of Defeat", 499, 499, 0),
    (40, "Deathmatch Classic", 499, 99, 80),
    (50, "Half-Life: Opposing Force", 499, 499, 0),
    (60, "Ricochet", 499, 499, 0),
    (70, "Half-Life", 999, 199, 80),
    (80, "Counter-Strike: Condition Zero", 999, 999, 0),
    (440, "Team Fortress 2", None, None, 0),
    (570, "Dota 2", None, None, 0),
    (730, "Counter-Strike 2", None, None, 0),
    (292030, "The Witcher 3: Wild Hunt", 3999, 799, 80),
    (1091500, "Cyberpunk 2077", 5999, 2999, 50),
    (1151640, "Horizon Zero Dawn™ Complete Edition", 4999, 1999, 60),
    (1174180, "Red Dead Redemption 2", 5999, 1979, 67),
    (1245620, "ELDEN RING", 5999, 5999, 0),
)


def seed_demo(fake: FakeSteam, cc: str = DEFAULT_REGION) -> None:
    """Price :data:`DEMO_APPS` in region ``cc`` (free ones answer ``data: []``)."""
    for app_id, name, initial, final, discount in DEMO_APPS:
        fake.set_name(app_id, name)
        if initial is None or final is None:
            fake.set_no_price(app_id, free=True)
        else:
            fake.set_price(app_id, cc, initial, final, discount)


def _parse_rate_limit(text: str) -> tuple[int, float] | None:
    if text.lower() in ("off", "none", "0"):
        return None
    count, _, seconds = text.partition("/")
    return int(count), float(seconds or 300.0)


def main(argv: Iterable[str] | None = None) -> None:
    """Serve a FakeSteam until SIGINT/SIGTERM (for demos and manual runs)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.fakes.steam", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--snapshot", help="SteamSpy snapshot CSV(.gz) to load into --cc")
    parser.add_argument("--cc", default=DEFAULT_REGION, help="region of --snapshot/--seed-demo")
    parser.add_argument(
        "--rate-limit", default="200/300", help="REQUESTS/SECONDS per client IP, or 'off'"
    )
    parser.add_argument("--api-key", default="testkey", help="key GetAppList accepts")
    parser.add_argument("--seed-demo", action="store_true", help="price a few famous apps")
    args = parser.parse_args(list(argv) if argv is not None else None)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    fake = FakeSteam(rate_limit=_parse_rate_limit(args.rate_limit), api_key=args.api_key)
    if args.snapshot:
        fake.load_snapshot(args.snapshot, cc=args.cc)
    if args.seed_demo:
        seed_demo(fake, args.cc)
    asyncio.run(run_until_signalled(fake, args.host, args.port))


if __name__ == "__main__":
    main()
