"""Steam store and Web API shapes: request parameters and tolerant response parsing (pure)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

USER_AGENT = "steamprice/0.1 (+self-hosted Steam price monitor)"
PRICED, NO_PRICE, UNKNOWN = "priced", "no_price", "unknown"
STATUSES = (PRICED, NO_PRICE, UNKNOWN)


class StoreError(Exception):
    """A whole ``appdetails`` answer cannot be used; ``kind`` says how to react.

    kinds: ``rate_limited`` (429: pause), ``banned`` (403 page: long pause), ``bad_batch``
    (400 ``null``: batching refused, fall back to single requests), ``server`` (5xx), ``malformed``
    (truncated or non-JSON body, or JSON of the wrong shape), ``timeout``, ``network``, ``http``
    (any other status). ``broken_object`` marks a 200 body that starts like the expected JSON
    object but does not parse: a cut transfer, or one broken entry that a smaller batch avoids.
    """

    def __init__(
        self, kind: str, detail: str, status: int = 0, *, broken_object: bool = False
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.status = status
        self.broken_object = broken_object

    @property
    def retryable(self) -> bool:
        return self.kind in ("server", "malformed", "timeout", "network")


def appdetails_params(app_ids: Sequence[int], cc: str) -> dict[str, str]:
    """Query of a batched price request: several ids only work with exactly this filter."""
    return {
        "appids": ",".join(str(a) for a in app_ids),
        "filters": "price_overview",
        "cc": cc,
        "l": "english",
    }


def split_appdetails(status: int, body: bytes, app_ids: Iterable[int]) -> dict[int, str]:
    """Check one ``appdetails`` answer and return each requested app's entry as JSON text.

    The HTTP status is checked before the body is trusted: Steam answers 429 and 400 with a body
    of ``null``, which parses as JSON. An id missing from the answer maps to ``{"success":false}``.
    """
    if status == 429:
        raise StoreError("rate_limited", "HTTP 429 (Steam sends no Retry-After)", status)
    if status == 403:
        raise StoreError("banned", "HTTP 403 Access Denied", status)
    if status == 400:
        raise StoreError("bad_batch", "HTTP 400 (batching refused)", status)
    if status >= 500:
        raise StoreError("server", f"HTTP {status}", status)
    if status != 200:
        raise StoreError("http", f"HTTP {status}", status)
    try:
        doc, strict = loads(body)
    except ValueError as exc:  # UnicodeDecodeError included
        raise StoreError(
            "malformed",
            f"body is not JSON ({exc.__class__.__name__})",
            status,
            broken_object=body.lstrip()[:1] == b"{",
        ) from None
    # An answer orjson refused is written back by Python's json, as it was read.
    text: Callable[[Any], str] = _orjson_text if strict else _json_text
    if not isinstance(doc, dict):
        raise StoreError("malformed", f"expected an object, got {type(doc).__name__}", status)
    entries: dict[int, str] = {}
    for app_id in app_ids:
        entry = doc.get(str(app_id))
        entries[app_id] = text(entry) if entry is not None else '{"success":false}'
    return entries


def loads(data: str | bytes) -> tuple[Any, bool]:
    """JSON ``data``, and whether orjson read it (strict JSON).

    orjson is three to four times faster, once per app and once per Steam answer of every
    sweep. What it refuses (NaN, Infinity, integers past 64 bits) Python's json reads: the
    answer is then json's. Raises ``ValueError`` (json's) when neither can read it.
    """
    try:
        return orjson.loads(data), True
    except orjson.JSONDecodeError:
        return json.loads(data), False


def _orjson_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# Not frozen: a frozen class costs four times as much to build (once per app of every sweep).
@dataclass(slots=True)
class ParsedEntry:
    """One app's price in one region as Steam described it."""

    status: str
    currency: str | None = None
    initial: int | None = None
    final: int | None = None
    discount_percent: int | None = None
    problem: str = ""


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def parse_entry(entry_json: str) -> ParsedEntry:
    """Parse one entry defensively: every odd shape becomes ``unknown`` with a reason.

    ``data`` may be an object, ``[]`` (free, unreleased or not sold here -- indistinguishable),
    ``{}`` or absent; ``success:false`` means Steam will not describe the app.
    """
    try:
        entry, _ = loads(entry_json)
    except ValueError:
        return ParsedEntry(UNKNOWN, problem="entry is not JSON")
    if not isinstance(entry, Mapping):
        return ParsedEntry(UNKNOWN, problem="entry is not an object")
    if entry.get("success") is not True:
        return ParsedEntry(UNKNOWN)
    data = entry.get("data")
    if data is None or data == [] or data == {}:
        return ParsedEntry(NO_PRICE)
    if not isinstance(data, Mapping):
        return ParsedEntry(UNKNOWN, problem="data is neither an object nor []")
    overview = data.get("price_overview")
    if overview is None:
        return ParsedEntry(NO_PRICE)
    if not isinstance(overview, Mapping):
        return ParsedEntry(UNKNOWN, problem="price_overview is not an object")
    currency = overview.get("currency")
    initial = _as_int(overview.get("initial"))
    final = _as_int(overview.get("final"))
    discount = _as_int(overview.get("discount_percent", 0))
    if not isinstance(currency, str) or not currency or initial is None or final is None:
        return ParsedEntry(UNKNOWN, problem="price_overview lacks currency/initial/final")
    if initial < 0 or final < 0 or discount is None or not 0 <= discount <= 100:
        return ParsedEntry(UNKNOWN, problem="price_overview has out-of-range numbers")
    return ParsedEntry(PRICED, currency.upper(), initial, final, discount)


# ``include_*`` option of IStoreService/GetAppList per app type (only games are on by default).
APP_TYPES = ("game", "dlc", "software", "video", "hardware")
_INCLUDE = {
    "game": "include_games",
    "dlc": "include_dlc",
    "software": "include_software",
    "video": "include_videos",
    "hardware": "include_hardware",
}
APP_LIST_PAGE_SIZE = 50_000


@dataclass(frozen=True, slots=True)
class AppListEntry:
    """One app of ``IStoreService/GetAppList``; the two numbers are 0 when Steam omits them."""

    app_id: int
    name: str = ""
    last_modified: int = 0
    price_change_number: int = 0


@dataclass(frozen=True, slots=True)
class AppListPage:
    apps: list[AppListEntry]
    last_appid: int | None  # None on the last page
    skipped: int = 0  # entries without a usable appid


def app_list_params(
    key: str,
    last_appid: int = 0,
    *,
    types: Sequence[str] = ("game",),
    if_modified_since: int | None = None,
    max_results: int = APP_LIST_PAGE_SIZE,
) -> dict[str, str]:
    """Query of one ``GetAppList`` page; every type is named so Steam's defaults do not matter."""
    params = {"key": key, "max_results": str(max_results), "last_appid": str(last_appid)}
    for app_type, option in _INCLUDE.items():
        params[option] = "true" if app_type in types else "false"
    if if_modified_since is not None:
        params["if_modified_since"] = str(max(0, if_modified_since))
    return params


def parse_app_list(status: int, body: bytes) -> AppListPage:
    """Parse one ``IStoreService/GetAppList/v1`` page (the last one has no ``last_appid``).

    An empty page is ``{"response":{}}`` (protobuf omits empty fields), so ``apps`` may be absent.
    """
    if status == 403:
        raise StoreError("banned", "HTTP 403 (missing or wrong STEAM_API_KEY?)", status)
    if status == 429:
        raise StoreError("rate_limited", "HTTP 429 (Web API key quota?)", status)
    if status != 200:
        raise StoreError("server" if status >= 500 else "http", f"HTTP {status}", status)
    try:
        doc = json.loads(body)
        response = doc["response"]
        apps = response.get("apps", [])
        if not isinstance(apps, list):
            raise TypeError("apps is not a list")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError("malformed", f"unexpected app list shape ({exc})", status) from None
    entries: list[AppListEntry] = []
    for app in apps:
        app_id = _as_int(app.get("appid")) if isinstance(app, dict) else None
        if app_id is None or not 1 <= app_id <= 2**31 - 1:
            continue
        name = app.get("name")
        entries.append(
            AppListEntry(
                app_id,
                name if isinstance(name, str) else "",
                _as_int(app.get("last_modified")) or 0,
                _as_int(app.get("price_change_number")) or 0,
            )
        )
    more = response.get("have_more_results") is True
    last = _as_int(response.get("last_appid")) if more else None
    if more and last is None and entries:
        last = entries[-1].app_id  # "more" without a cursor: continue after the last app seen
    return AppListPage(entries, last, skipped=len(apps) - len(entries))
