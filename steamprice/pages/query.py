"""What the price pages ask MySQL: parameters checked, SQL built, rows shaped (pure, no I/O).

Every value a visitor sends is validated here and reaches the SQL only as a bound parameter;
the only text pasted into a statement comes from this module's own tables (sort orders, the
filters' fixed fragments).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from steamprice.pricing import HISTORY_WINDOW, KINDS, effective_discount
from steamprice.steam import PRICED

STORE_APP_URL = "https://store.steampowered.com/app/{app_id}/"
PER_PAGE = 50
MAX_PER_PAGE = 200
# Deeper offsets are refused (like Elasticsearch's default result window): an offset costs a
# scan of every row before it (1.2 s at 200,000 apps, 380 ms at 100,000: `python -m bench
# pages`), and a visitor looking that far is better served by the search, filters and sorts.
MAX_OFFSET = 10_000
MAX_SEARCH = 100
# An app page lists this many of the app's newest changes (the rest: /changes?app=<id>).
APP_CHANGES = 100
# A guard against an app with an absurd history; years of 6-hourly changes fit well below it.
APP_HISTORY_ROWS = 20_000
MAX_APP_ID = 4_294_967_295

_CC_RE = re.compile(r"^[a-z]{2}$")
_EVENT_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,40}$")
_INT_RE = re.compile(r"^[0-9]{1,10}$")


class BadParameter(ValueError):
    """A query parameter a page cannot use (answered 400 with this message)."""


class NotFound(LookupError):
    """The path names nothing (answered 404 with this message)."""


# --- parameters -------------------------------------------------------------------------------


def _one(params: Mapping[str, str], name: str) -> str:
    return params.get(name, "").strip()


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = _one(params, name)
    if not text:
        return default
    if not _INT_RE.match(text) or not low <= int(text) <= high:
        raise BadParameter(f"{name} must be a whole number from {low} to {high}")
    return int(text)


def _cc(params: Mapping[str, str], name: str = "cc") -> str | None:
    text = _one(params, name).lower()
    if not text:
        return None
    if not _CC_RE.match(text):
        raise BadParameter(f"{name} must be a two-letter region code such as us")
    return text


def _flag(params: Mapping[str, str], name: str) -> bool:
    text = _one(params, name).lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise BadParameter(f"{name} must be 1 or 0")


def parse_app_id(text: str) -> int:
    """The app id of a path (``/apps/<id>``); anything else names no app."""
    if not _INT_RE.match(text) or not 0 < int(text) <= MAX_APP_ID:
        raise NotFound(f"no app {text[:40]!r}: app ids are positive whole numbers")
    return int(text)


# --- /prices ----------------------------------------------------------------------------------

# Sort key -> (label, ORDER BY). The price sorts list priced apps only: an unpriced app has no
# place in a price order. Ties are broken by app id, so pages never overlap.
SORTS: dict[str, tuple[str, str]] = {
    "discount": ("Biggest discount", "p.discount_percent DESC, p.app_id DESC"),
    "price": ("Lowest price", "p.final_price ASC, p.app_id ASC"),
    "price_desc": ("Highest price", "p.final_price DESC, p.app_id DESC"),
    "name": ("Name", "a.name ASC, a.app_id ASC"),
    "app_id": ("App id", "p.app_id ASC"),
}
DEFAULT_SORT = "discount"


@dataclass(frozen=True)
class PriceQuery:
    """The /prices parameters, checked."""

    cc: str
    q: str = ""
    min_discount: int = 0
    at_low: bool = False
    sort: str = DEFAULT_SORT
    page: int = 1
    per_page: int = PER_PAGE

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string of this query with ``changes`` (defaults left out)."""
        q = replace(self, **changes)
        values = {
            "q": q.q,
            "cc": q.cc,
            "min_discount": q.min_discount or "",
            "at_low": "1" if q.at_low else "",
            "sort": "" if q.sort == DEFAULT_SORT else q.sort,
            "page": "" if q.page == 1 else q.page,
            "per_page": "" if q.per_page == PER_PAGE else q.per_page,
        }
        return {k: str(v) for k, v in values.items() if v != ""}


def deepest_page(per_page: int) -> int:
    """The last page a visitor may ask for (see ``MAX_OFFSET``)."""
    return MAX_OFFSET // per_page + 1


def parse_price_query(params: Mapping[str, str], default_cc: str) -> PriceQuery:
    q = _one(params, "q")
    if len(q) > MAX_SEARCH:
        raise BadParameter(f"q is longer than {MAX_SEARCH} characters")
    sort = _one(params, "sort") or DEFAULT_SORT
    if sort not in SORTS:
        raise BadParameter(f"sort must be one of {', '.join(SORTS)}")
    per_page = _int(params, "per_page", PER_PAGE, 1, MAX_PER_PAGE)
    page = _int(params, "page", 1, 1, deepest_page(per_page))
    return PriceQuery(
        cc=_cc(params) or default_cc,
        q=q,
        min_discount=_int(params, "min_discount", 0, 0, 100),
        at_low=_flag(params, "at_low"),
        sort=sort,
        page=page,
        per_page=per_page,
    )


def like_pattern(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere (its own ``%``, ``_``, ``\\`` literal)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


PRICE_COLUMNS = (
    "p.app_id, a.name, p.cc, p.status, p.currency, p.initial_price, p.final_price,"
    " p.discount_percent, p.observed_at, p.discount_ends_at, l.low_final, l.low_at"
)


def price_list_sql(query: PriceQuery) -> tuple[str, list[Any]]:
    """One page of /prices (one row more than a page: is there a next one?)."""
    where = ["p.cc = %s"]
    args: list[Any] = [query.cc]
    if query.min_discount:
        # The effective discount: a percentage without a lower price is none (pricing rule).
        where.append("p.discount_percent >= %s AND p.final_price < p.initial_price")
        args.append(query.min_discount)
    if query.at_low:
        where.append("p.status = 'priced' AND p.final_price <= l.low_final")
    if query.sort in ("price", "price_desc"):
        where.append("p.status = 'priced' AND p.final_price IS NOT NULL")
    if query.q:
        if query.q.isdigit() and int(query.q) <= MAX_APP_ID:
            where.append("(p.app_id = %s OR a.name LIKE %s)")
            args.append(int(query.q))
        else:
            where.append("a.name LIKE %s")
        args.append(like_pattern(query.q))
    sql = (
        f"SELECT {PRICE_COLUMNS} FROM price_current p"
        " JOIN apps a ON a.app_id = p.app_id"
        " LEFT JOIN price_lows l"
        " ON l.app_id = p.app_id AND l.cc = p.cc AND l.currency = p.currency"
        f" WHERE {' AND '.join(where)}"
        f" ORDER BY {SORTS[query.sort][1]} LIMIT %s OFFSET %s"
    )
    return sql, [*args, query.per_page + 1, query.offset]


def _in(n: int) -> str:
    return ", ".join(["%s"] * n)


def other_regions_sql(app_ids: Sequence[int]) -> tuple[str, list[Any]]:
    """Every region's current price of the apps of a page."""
    return (
        "SELECT app_id, cc, status, currency, initial_price, final_price, discount_percent"
        f" FROM price_current WHERE app_id IN ({_in(len(app_ids))}) ORDER BY app_id, cc",
        list(app_ids),
    )


CHANGE_COLUMNS = (
    "c.event_id, c.app_id, a.name, c.cc, c.kind, c.currency, c.old_status, c.new_status,"
    " c.old_currency, c.old_initial, c.old_final, c.old_discount, c.new_initial, c.new_final,"
    " c.new_discount, c.observed_at, c.new_historical_low, c.matches_historical_low,"
    " c.historical_low, c.lowest_90d, c.discount_ends_at"
)


def last_changes_sql(cc: str, app_ids: Sequence[int]) -> tuple[str, list[Any]]:
    """The newest change of each app of a page in one region (idx_price_changes_app)."""
    return (
        f"SELECT {CHANGE_COLUMNS} FROM price_changes c"
        " JOIN (SELECT app_id, MAX(observed_at) AS at FROM price_changes"
        f" WHERE cc = %s AND app_id IN ({_in(len(app_ids))}) GROUP BY app_id) m"
        " ON m.app_id = c.app_id AND m.at = c.observed_at"
        " LEFT JOIN apps a ON a.app_id = c.app_id"
        " WHERE c.cc = %s ORDER BY c.app_id, c.event_id",
        [cc, *app_ids, cc],
    )


# The regions the pages offer: a loose index scan of price_current's (cc, ...) indexes.
REGIONS_SQL = "SELECT DISTINCT cc FROM price_current ORDER BY cc"


# --- /changes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeQuery:
    """The /changes parameters, checked. ``before`` is the cursor: (observed_at, event_id)."""

    cc: str | None = None
    kind: str | None = None
    app_id: int | None = None
    before: tuple[datetime, str] | None = None
    per_page: int = PER_PAGE

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string of this query with ``changes`` (defaults left out)."""
        q = replace(self, **changes)
        values: dict[str, Any] = {
            "cc": q.cc,
            "kind": q.kind,
            "app": q.app_id,
            "before": format_cursor(q.before) if q.before else None,
            "per_page": None if q.per_page == PER_PAGE else q.per_page,
        }
        return {k: str(v) for k, v in values.items() if v is not None}


def format_cursor(before: tuple[datetime, str]) -> str:
    return f"{before[0].strftime('%Y-%m-%dT%H:%M:%S.%f')}~{before[1]}"


def parse_cursor(text: str) -> tuple[datetime, str]:
    at, sep, event_id = text.partition("~")
    try:
        moment = datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        moment = None
    if not sep or moment is None or not _EVENT_ID_RE.match(event_id):
        raise BadParameter("before is not a cursor of this page (follow the Older link)")
    return moment, event_id


def parse_change_query(params: Mapping[str, str]) -> ChangeQuery:
    kind = _one(params, "kind") or None
    if kind is not None and kind not in KINDS:
        raise BadParameter(f"kind must be one of {', '.join(KINDS)}")
    app_text = _one(params, "app")
    app_id = None
    if app_text:
        if not _INT_RE.match(app_text) or not 0 < int(app_text) <= MAX_APP_ID:
            raise BadParameter("app must be an app id")
        app_id = int(app_text)
    before = _one(params, "before")
    return ChangeQuery(
        cc=_cc(params),
        kind=kind,
        app_id=app_id,
        before=parse_cursor(before) if before else None,
        per_page=_int(params, "per_page", PER_PAGE, 1, MAX_PER_PAGE),
    )


def change_list_sql(query: ChangeQuery) -> tuple[str, list[Any]]:
    """Newest first, from the cursor on; one row more than a page (is there an older one?)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("c.cc", query.cc), ("c.kind", query.kind), ("c.app_id", query.app_id)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if query.before is not None:
        at, event_id = query.before
        where.append("(c.observed_at < %s OR (c.observed_at = %s AND c.event_id < %s))")
        args += [at, at, event_id]
    return (
        f"SELECT {CHANGE_COLUMNS} FROM price_changes c LEFT JOIN apps a ON a.app_id = c.app_id"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY c.observed_at DESC, c.event_id DESC LIMIT %s",
        [*args, query.per_page + 1],
    )


# --- /apps/<id> -------------------------------------------------------------------------------

APP_SQL = "SELECT app_id, name FROM apps WHERE app_id = %s"
APP_PRICES_SQL = (
    "SELECT p.app_id, a.name, p.cc, p.status, p.currency, p.initial_price, p.final_price,"
    " p.discount_percent, p.observed_at, p.discount_ends_at, l.low_final, l.low_at"
    " FROM price_current p JOIN apps a ON a.app_id = p.app_id"
    " LEFT JOIN price_lows l ON l.app_id = p.app_id AND l.cc = p.cc AND l.currency = p.currency"
    " WHERE p.app_id = %s ORDER BY p.cc"
)
APP_HISTORY_SQL = (
    "SELECT cc, valid_from, valid_to, status, currency, initial_price, final_price,"
    " discount_percent, last_observed_at FROM price_history WHERE app_id = %s"
    f" ORDER BY cc, valid_from LIMIT {APP_HISTORY_ROWS}"
)
APP_CHANGES_SQL = (
    f"SELECT {CHANGE_COLUMNS} FROM price_changes c LEFT JOIN apps a ON a.app_id = c.app_id"
    f" WHERE c.app_id = %s ORDER BY c.observed_at DESC, c.event_id DESC LIMIT {APP_CHANGES + 1}"
)


# --- rows -------------------------------------------------------------------------------------


def utc(moment: datetime | None) -> datetime | None:
    """DATETIME columns hold UTC without a zone."""
    return None if moment is None else moment.replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def store_url(app_id: int) -> str:
    return STORE_APP_URL.format(app_id=app_id)


@dataclass(frozen=True)
class Low:
    """A lowest price and when the latest period at that price started."""

    final: int
    at: datetime


class Priced:
    """What the pages read from a status and Steam's three price fields (a row's or a period's)."""

    status: str
    initial: int | None
    final: int | None
    discount_percent: int | None

    @property
    def priced(self) -> bool:
        return self.status == PRICED and self.final is not None

    @property
    def discount(self) -> int:
        """The real discount (a percentage without a lower price is none)."""
        return effective_discount(self.initial, self.final, self.discount_percent)


@dataclass(frozen=True)
class RegionPrice(Priced):
    """An app's current price in one region, with its lows."""

    cc: str
    status: str
    currency: str | None
    initial: int | None
    final: int | None
    discount_percent: int | None
    observed_at: datetime | None = None
    discount_ends_at: datetime | None = None
    historical_low: Low | None = None
    lowest_90d: Low | None = None

    @property
    def at_historical_low(self) -> bool:
        low = self.historical_low
        if not self.priced or low is None or self.final is None:
            return False
        return self.final <= low.final

    def brief_json(self) -> dict[str, Any]:
        """The price alone (the other regions of a /prices row)."""
        return {
            "cc": self.cc,
            "status": self.status,
            "currency": self.currency,
            "initial_price": self.initial,
            "final_price": self.final,
            "discount_percent": self.discount_percent,
        }

    def to_json(self) -> dict[str, Any]:
        low, low90 = self.historical_low, self.lowest_90d
        return {
            **self.brief_json(),
            "observed_at": iso(self.observed_at),
            "discount_ends_at": iso(self.discount_ends_at),
            "historical_low": low.final if low else None,
            "historical_low_at": iso(low.at) if low else None,
            "at_historical_low": self.at_historical_low,
            "lowest_90d": low90.final if low90 else None,
            "lowest_90d_at": iso(low90.at) if low90 else None,
        }


@dataclass(frozen=True)
class Change:
    """One row of price_changes."""

    event_id: str
    app_id: int
    name: str | None
    cc: str
    kind: str
    currency: str | None
    old_status: str
    new_status: str
    old_currency: str | None
    old_initial: int | None
    old_final: int | None
    old_discount: int | None
    new_initial: int | None
    new_final: int | None
    new_discount: int | None
    observed_at: datetime
    new_historical_low: bool
    matches_historical_low: bool
    historical_low: int | None
    lowest_90d: int | None
    discount_ends_at: datetime | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Change:
        values = list(row)
        values[15] = utc(values[15])
        values[16], values[17] = bool(values[16]), bool(values[17])
        values[20] = utc(values[20])
        return cls(*values)

    @property
    def old_discount_real(self) -> int:
        return effective_discount(self.old_initial, self.old_final, self.old_discount)

    @property
    def new_discount_real(self) -> int:
        return effective_discount(self.new_initial, self.new_final, self.new_discount)

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "app_id": self.app_id,
            "name": self.name,
            "cc": self.cc,
            "kind": self.kind,
            "currency": self.currency,
            "old_status": self.old_status,
            "new_status": self.new_status,
            "old_currency": self.old_currency,
            "old_initial": self.old_initial,
            "old_final": self.old_final,
            "old_discount": self.old_discount,
            "new_initial": self.new_initial,
            "new_final": self.new_final,
            "new_discount": self.new_discount,
            "observed_at": iso(self.observed_at),
            "new_historical_low": self.new_historical_low,
            "matches_historical_low": self.matches_historical_low,
            "historical_low": self.historical_low,
            "lowest_90d": self.lowest_90d,
            "discount_ends_at": iso(self.discount_ends_at),
        }


def region_from_row(row: Sequence[Any]) -> RegionPrice:
    """A row of ``PRICE_COLUMNS`` (from ``cc`` on)."""
    (cc, status, currency, initial, final, discount, observed, ends, low_final, low_at) = row
    return RegionPrice(
        cc=cc,
        status=status,
        currency=currency,
        initial=initial,
        final=final,
        discount_percent=discount,
        observed_at=utc(observed),
        discount_ends_at=utc(ends),
        historical_low=None if low_final is None else Low(low_final, utc(low_at) or datetime.min),
    )


@dataclass(frozen=True)
class PriceRow:
    """One app on /prices: its price in the chosen region, the others, its last change there."""

    app_id: int
    name: str | None
    price: RegionPrice
    regions: list[RegionPrice] = field(default_factory=list)
    last_change: Change | None = None

    def to_json(self) -> dict[str, Any]:
        price = self.price.to_json()
        del price["lowest_90d"], price["lowest_90d_at"]  # an app page's figure (its history)
        return {
            "app_id": self.app_id,
            "name": self.name,
            "store_url": store_url(self.app_id),
            **price,
            "last_change": self.last_change.to_json() if self.last_change else None,
            "regions": [r.brief_json() for r in self.regions],
        }


def price_rows(
    rows: Sequence[Sequence[Any]],
    regions: Sequence[Sequence[Any]],
    changes: Sequence[Sequence[Any]],
) -> list[PriceRow]:
    """The rows of a /prices page from its three queries."""
    by_app: dict[int, list[RegionPrice]] = {}
    for app_id, cc, status, currency, initial, final, discount in regions:
        by_app.setdefault(app_id, []).append(
            RegionPrice(cc, status, currency, initial, final, discount)
        )
    last: dict[int, Change] = {}
    for row in changes:
        change = Change.from_row(row)
        last.setdefault(change.app_id, change)
    return [
        PriceRow(
            app_id=row[0],
            name=row[1],
            price=region_from_row(row[2:]),
            regions=by_app.get(row[0], []),
            last_change=last.get(row[0]),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class Period(Priced):
    """One row of price_history, in UTC."""

    cc: str
    valid_from: datetime
    valid_to: datetime | None
    status: str
    currency: str | None
    initial: int | None
    final: int | None
    discount_percent: int | None
    last_observed_at: datetime

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Period:
        cc, start, end, status, currency, initial, final, discount, last = row
        return cls(
            cc, utc(start) or datetime.min, utc(end), status, currency, initial, final,
            discount, utc(last) or datetime.min,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "valid_from": iso(self.valid_from),
            "valid_to": iso(self.valid_to),
            "status": self.status,
            "currency": self.currency,
            "initial_price": self.initial,
            "final_price": self.final,
            "discount_percent": self.discount_percent,
            "last_observed_at": iso(self.last_observed_at),
        }


def lowest_since(periods: Sequence[Period], currency: str | None, since: datetime) -> Low | None:
    """The lowest price in ``currency`` of the periods current at some time after ``since``.

    Its date is the start of the latest such period at that price (the change agent's rule for
    ``lowest_90d``: a period that began before ``since`` and lasted into it counts).
    """
    best: Low | None = None
    for p in periods:
        if not p.priced or p.currency != currency or p.final is None:
            continue
        if p.valid_to is not None and p.valid_to <= since:
            continue
        if (
            best is None
            or p.final < best.final
            or (p.final == best.final and p.valid_from > best.at)
        ):
            best = Low(p.final, p.valid_from)
    return best


@dataclass(frozen=True)
class RegionDetail:
    """One region of an app page: the price, its lows, its history."""

    price: RegionPrice
    history: list[Period]

    def to_json(self) -> dict[str, Any]:
        return {**self.price.to_json(), "history": [p.to_json() for p in self.history]}


@dataclass(frozen=True)
class AppDetail:
    """Everything /apps/<id> shows."""

    app_id: int
    name: str | None
    regions: list[RegionDetail]
    changes: list[Change]
    more_changes: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "name": self.name,
            "store_url": store_url(self.app_id),
            "regions": [r.to_json() for r in self.regions],
            "changes": [c.to_json() for c in self.changes],
            "more_changes": self.more_changes,
        }


def app_detail(
    app_row: Sequence[Any],
    prices: Sequence[Sequence[Any]],
    history: Sequence[Sequence[Any]],
    changes: Sequence[Sequence[Any]],
    now: datetime,
) -> AppDetail:
    """An app page from its four queries; ``now`` sets the 90-day window."""
    periods: dict[str, list[Period]] = {}
    for row in history:
        period = Period.from_row(row)
        periods.setdefault(period.cc, []).append(period)
    regions = []
    for row in prices:
        price = region_from_row(row[2:])
        own = periods.get(price.cc, [])
        low90 = lowest_since(own, price.currency, now - HISTORY_WINDOW) if price.priced else None
        regions.append(RegionDetail(replace(price, lowest_90d=low90), own))
    listed = [Change.from_row(r) for r in changes]
    return AppDetail(
        app_id=int(app_row[0]),
        name=app_row[1],
        regions=regions,
        changes=listed[:APP_CHANGES],
        more_changes=len(listed) > APP_CHANGES,
    )
