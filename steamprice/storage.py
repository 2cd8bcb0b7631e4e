"""SQL of the MySQL sink: pure planning of each batch, and the two writers that run the plans.

Every statement is idempotent under redelivery: ``price_current`` only moves forward in
``observed_at``; ``price_changes`` is keyed by the stable ``event_id``; ``price_checks`` by the
stable ``check_id`` of a batch; ``price_history`` is
keyed by (app, region, start of the period), a period is closed once and never reopened, and an
observation older than the open period is ignored (the change agent's rule, so the periods and
the recorded changes agree). The upserts use ``VALUES(col)``: MariaDB 10.11 has no row alias
(``INSERT ... AS new``) and MySQL 8.4 still accepts ``VALUES()`` (deprecated, with a warning).
Duplicates are skipped with a no-op ``ON DUPLICATE KEY UPDATE`` rather than ``INSERT IGNORE``,
which would also turn bad values into silently truncated ones.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

import aiomysql
from aiomysql.cursors import RE_INSERT_VALUES
from pymysql.converters import escape_item, escape_string

from steamprice import discount_ends
from steamprice.batches import ObservedBatch, app_ids_json, chunks
from steamprice.database import IN_LIST_MAX, Database
from steamprice.enddates import discounted_offer
from steamprice.models import Observation, PriceChange
from steamprice.pricing import fingerprint
from steamprice.steam import NO_PRICE, PRICED, UNKNOWN

logger = logging.getLogger(__name__)

Row = tuple[Any, ...]
T = TypeVar("T")

STATUSES = (PRICED, NO_PRICE, UNKNOWN)
MAX_UINT = 4_294_967_295  # INT UNSIGNED

_CURRENT_COLS = ("status", "currency", "initial_price", "final_price", "discount_percent")

UPSERT_PRICE_CURRENT = (
    "INSERT INTO price_current (app_id, cc, status, currency, initial_price, final_price,"
    " discount_percent, observed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    " ON DUPLICATE KEY UPDATE "
    # Columns are assigned left to right: observed_at must be compared before it is moved.
    + ", ".join(
        f"{c} = IF(VALUES(observed_at) >= observed_at, VALUES({c}), {c})" for c in _CURRENT_COLS
    )
    # A new price has no end date until discount_ends has one for it (synced right after).
    + ", discount_ends_at = IF(VALUES(observed_at) > observed_at, NULL, discount_ends_at)"
    + ", observed_at = GREATEST(observed_at, VALUES(observed_at))"
)

INSERT_APPS = "INSERT INTO apps (app_id) VALUES (%s) ON DUPLICATE KEY UPDATE app_id = app_id"

_CHANGE_COLS = (
    "event_id, app_id, cc, kind, currency, old_initial, old_final, old_discount, new_initial,"
    " new_final, new_discount, observed_at, old_status, new_status, old_currency,"
    " previous_observed_at, new_historical_low, matches_historical_low, historical_low,"
    " lowest_90d, discount_ends_at"
)
INSERT_PRICE_CHANGES = (
    f"INSERT INTO price_changes ({_CHANGE_COLS}) VALUES ("
    + ", ".join(["%s"] * len(_CHANGE_COLS.split(",")))
    + ") ON DUPLICATE KEY UPDATE event_id = event_id"
)


# One row per batch record: every app of it was checked at checked_at (whether or not its price
# changed, which is all that reaches price_current and price_history).
INSERT_PRICE_CHECKS = (
    "INSERT INTO price_checks (check_id, cc, checked_at, apps, app_ids)"
    " VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE check_id = check_id"
)
PRUNE_PRICE_CHECKS = "DELETE FROM price_checks WHERE checked_at < %s LIMIT 10000"


# The open period of every (app, region) of a batch, locked until the batch commits so that
# two workers briefly owning the same partition (a rebalance) cannot open two periods.
def select_open_periods(n_apps: int) -> str:
    return (
        "SELECT app_id, cc, valid_from, valid_to, status, currency, initial_price, final_price,"
        " discount_percent, last_observed_at FROM price_history"
        f" WHERE app_id IN ({', '.join(['%s'] * n_apps)}) AND valid_to IS NULL FOR UPDATE"
    )


UPSERT_PRICE_HISTORY = (
    "INSERT INTO price_history (app_id, cc, valid_from, valid_to, status, currency,"
    " initial_price, final_price, discount_percent, last_observed_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON DUPLICATE KEY UPDATE valid_to = COALESCE(valid_to, VALUES(valid_to)),"
    " last_observed_at = GREATEST(last_observed_at, VALUES(last_observed_at))"
)


# The lowest price of an app per region and currency (sql/020): the lower price wins, and at an
# equal price the later period start; commutative and idempotent, so batches may arrive in any
# order or twice. low_at is assigned first: it compares against the low_final being replaced.
UPSERT_PRICE_LOWS = (
    "INSERT INTO price_lows (app_id, cc, currency, low_final, low_at)"
    " VALUES (%s, %s, %s, %s, %s)"
    " ON DUPLICATE KEY UPDATE"
    " low_at = IF(VALUES(low_final) < low_final, VALUES(low_at),"
    " IF(VALUES(low_final) = low_final, GREATEST(low_at, VALUES(low_at)), low_at)),"
    " low_final = LEAST(low_final, VALUES(low_final))"
)


@lru_cache(maxsize=1024)
def utc_naive(moment: datetime) -> datetime:
    """DATETIME columns hold UTC without a zone.

    Cached: the observations of a batch share one fetch time, converted for three tables.
    """
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


# --- validation: what the schema cannot hold is rejected before any SQL -----------------------


def _uint(value: object, nullable: bool = True, top: int = MAX_UINT) -> bool:
    if value is None:
        return nullable
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top


def _text(value: object, size: int, exact: bool = False, nullable: bool = True) -> bool:
    if value is None:
        return nullable
    return isinstance(value, str) and (len(value) == size if exact else 0 < len(value) <= size)


def observation_problem(o: Observation) -> str | None:
    """Why ``o`` cannot be stored, or None."""
    if not _uint(o.app_id, nullable=False) or o.app_id == 0:
        return f"app_id {o.app_id!r} is not an app id"
    if not _text(o.cc, 2, exact=True, nullable=False):
        return f"cc {o.cc!r} is not a region code"
    if o.status not in STATUSES:
        return f"status {o.status!r} is unknown"
    if not _text(o.currency, 3, exact=True):
        return f"currency {o.currency!r} is not a currency code"
    if not (_uint(o.initial) and _uint(o.final) and _uint(o.discount_percent, top=100)):
        return f"prices {o.initial!r}/{o.final!r}/{o.discount_percent!r} out of range"
    if not isinstance(o.observed_at, datetime):
        return f"observed_at {o.observed_at!r} is not a time"
    return None


def check_problem(b: ObservedBatch) -> str | None:
    """Why the check of batch ``b`` cannot be stored, or None."""
    if not _text(b.check_id, 40, nullable=False):
        return f"check_id {b.check_id!r} is not a check id"
    if not _text(b.cc, 2, exact=True, nullable=False):
        return f"cc {b.cc!r} is not a region code"
    if not isinstance(b.checked_at, datetime):
        return f"checked_at {b.checked_at!r} is not a time"
    if not all(_uint(a, nullable=False) for a in b.app_ids):
        return "an app id is not an app id"
    return None


def change_problem(e: PriceChange) -> str | None:
    """Why ``e`` cannot be stored, or None."""
    if not _text(e.event_id, 40, nullable=False):
        return f"event_id {e.event_id!r} is not an event id"
    if not _uint(e.app_id, nullable=False) or e.app_id == 0:
        return f"app_id {e.app_id!r} is not an app id"
    if not _text(e.cc, 2, exact=True, nullable=False):
        return f"cc {e.cc!r} is not a region code"
    if not _text(e.kind, 32, nullable=False):
        return f"kind {e.kind!r} is not a change kind"
    if e.old_status not in STATUSES or e.new_status not in STATUSES:
        return f"status {e.old_status!r} -> {e.new_status!r} is unknown"
    if not (_text(e.old_currency, 3, exact=True) and _text(e.new_currency, 3, exact=True)):
        return f"currency {e.old_currency!r} -> {e.new_currency!r} is not a currency code"
    prices = (e.old_initial, e.old_final, e.new_initial, e.new_final)
    lows = (e.historical_low, e.lowest_90d)
    discounts = (e.old_discount, e.new_discount)
    if not (all(_uint(p) for p in (*prices, *lows)) and all(_uint(d, top=100) for d in discounts)):
        return f"prices {prices!r} / discounts {discounts!r} out of range"
    if not (isinstance(e.observed_at, datetime) and isinstance(e.previous_observed_at, datetime)):
        return "observed_at or previous_observed_at is not a time"
    return None


# --- planning ---------------------------------------------------------------------------------


def price_current_rows(observations: Iterable[Observation]) -> list[Row]:
    """One row per (app, cc): the newest observation of the batch wins."""
    newest: dict[tuple[int, str], Observation] = {}
    for obs in observations:
        key = (obs.app_id, obs.cc)
        if key not in newest or obs.observed_at >= newest[key].observed_at:
            newest[key] = obs
    return [
        (
            o.app_id,
            o.cc,
            o.status,
            o.currency,
            o.initial,
            o.final,
            o.discount_percent,
            utc_naive(o.observed_at),
        )
        for o in sorted(newest.values(), key=lambda o: (o.app_id, o.cc))
    ]


def price_check_rows(batches: Iterable[ObservedBatch]) -> list[Row]:
    unique = {b.check_id: (b, b.app_ids) for b in batches}
    return [
        (b.check_id, b.cc, utc_naive(b.checked_at), len(apps), app_ids_json(apps))
        for b, apps in sorted(unique.values(), key=lambda pair: pair[0].check_id)
        if apps
    ]


def app_rows(app_ids: Iterable[int]) -> list[Row]:
    return [(a,) for a in sorted(set(app_ids))]


def price_change_rows(events: Iterable[PriceChange]) -> list[Row]:
    unique = {e.event_id: e for e in events}
    return [
        (
            e.event_id,
            e.app_id,
            e.cc,
            e.kind,
            e.new_currency or e.old_currency,
            e.old_initial,
            e.old_final,
            e.old_discount,
            e.new_initial,
            e.new_final,
            e.new_discount,
            utc_naive(e.observed_at),
            e.old_status,
            e.new_status,
            e.old_currency,
            utc_naive(e.previous_observed_at),
            int(e.new_historical_low),
            int(e.matches_historical_low),
            e.historical_low,
            e.lowest_90d,
            utc_naive(e.discount_ends_at) if e.discount_ends_at is not None else None,
        )
        for e in sorted(unique.values(), key=lambda e: e.event_id)
    ]


@dataclass(slots=True)
class Period:
    """One row of ``price_history``; times are naive UTC like the column.

    Never changed in place (``dataclasses.replace`` makes the next one); not frozen because a
    frozen dataclass costs twice as much to build, once per app of a first sweep.
    """

    app_id: int
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
        return cls(*row)

    @classmethod
    def opened_by(cls, o: Observation) -> Period:
        at = utc_naive(o.observed_at)
        return cls(
            o.app_id, o.cc, at, None, o.status, o.currency, o.initial, o.final,
            o.discount_percent, at,
        )  # fmt: skip

    def same_price(self, o: Observation) -> bool:
        return fingerprint(
            self.status, self.currency, self.initial, self.final, self.discount_percent
        ) == fingerprint(o.status, o.currency, o.initial, o.final, o.discount_percent)

    def row(self) -> Row:
        return (
            self.app_id, self.cc, self.valid_from, self.valid_to, self.status, self.currency,
            self.initial, self.final, self.discount_percent, self.last_observed_at,
        )  # fmt: skip


def plan_history(
    open_periods: dict[tuple[int, str], Period], observations: Iterable[Observation]
) -> list[Row]:
    """``price_history`` rows to upsert for a batch, given the open period of each key.

    Observations are applied in order, with the change agent's rules: one older than the open
    period is stale; one with the same price (``pricing.fingerprint``) only confirms the period;
    a different price closes the open period at its time and opens the next one.
    """
    current = dict(open_periods)
    touched: dict[tuple[int, str, datetime], Period] = {}
    for o in observations:
        key = (o.app_id, o.cc)
        at = utc_naive(o.observed_at)
        period = current.get(key)
        if period is None:
            nxt = Period.opened_by(o)
        elif at < period.valid_from:
            continue
        elif period.same_price(o):
            if at <= period.last_observed_at:
                continue
            nxt = replace(period, last_observed_at=at)
        elif at == period.valid_from:
            # Two different prices observed at the same instant cannot both start a period;
            # the first one applied stays (no fetch of ours ever shares a timestamp).
            continue
        else:
            closed = replace(period, valid_to=at)
            touched[(closed.app_id, closed.cc, closed.valid_from)] = closed
            nxt = Period.opened_by(o)
        current[key] = nxt
        touched[(nxt.app_id, nxt.cc, nxt.valid_from)] = nxt
    return [touched[k].row() for k in sorted(touched)]


def low_rows(history: Iterable[Row]) -> list[Row]:
    """``price_lows`` rows for the ``price_history`` rows of a batch (``plan_history``'s output).

    One per (app, region, currency): the lowest final price of the priced periods and the
    latest start of a period at that price.
    """
    lows: dict[tuple[int, str, str], tuple[int, datetime]] = {}
    for app_id, cc, valid_from, _, status, currency, _, final, _, _ in history:
        if status != PRICED or currency is None or final is None:
            continue
        key = (app_id, cc, currency)
        found = lows.get(key)
        if found is None or final < found[0] or (final == found[0] and valid_from > found[1]):
            lows[key] = (final, valid_from)
    return [(*key, final, at) for key, (final, at) in sorted(lows.items())]


# --- executing --------------------------------------------------------------------------------

# SQL literals of the types the planned rows hold, as pymysql writes them (sessions never set
# NO_BACKSLASH_ESCAPES); anything else goes through pymysql's own escaping.
_LITERALS: dict[type, Callable[[Any], str]] = {
    int: str,
    bool: lambda v: "1" if v else "0",
    type(None): lambda _: "NULL",
    str: lambda v: "'" + escape_string(v) + "'",
    datetime: lambda v: "'" + v.isoformat(" ") + "'",
}


def sql_literal(value: Any) -> str:
    encode = _LITERALS.get(type(value))
    return encode(value) if encode is not None else str(escape_item(value, "utf8mb4"))


def multi_row_insert(statement: str, rows: Sequence[Row]) -> str:
    """``statement`` (an ``INSERT ... VALUES (%s, ...) [ON DUPLICATE ...]``) for all ``rows``.

    The literal of each distinct value is written once per statement: the rows of a batch
    repeat the same times, regions, currencies and statuses.
    """
    m = RE_INSERT_VALUES.match(statement)
    if m is None:
        raise ValueError(f"not a single-row INSERT ... VALUES statement: {statement[:80]}")
    head, tail = str(m.group(1)), str(m.group(3))
    written: dict[tuple[type, Any], str] = {}

    def literal(value: Any) -> str:
        if type(value) is int:
            return str(value)
        key = (type(value), value)
        try:
            text = written.get(key)
        except TypeError:  # not hashable: nothing the planned rows hold, but still SQL
            return sql_literal(value)
        if text is None:
            text = written[key] = sql_literal(value)
        return text

    return head + ",".join("(" + ",".join(map(literal, row)) + ")" for row in rows) + tail


# Rows per multi-row INSERT: a statement of about 0.5 MB (well under ``max_allowed_packet``,
# 16 MB on MariaDB, 64 MB on MySQL 8). Every statement is a round trip, each of which a
# worker busy with a first sweep answers a turn of its event loop later.
INSERT_ROWS_MAX = 5000


async def insert_rows(cur: aiomysql.Cursor, statement: str, rows: Sequence[Row]) -> int:
    """Send ``rows`` as multi-row INSERTs of up to ``INSERT_ROWS_MAX`` rows; the affected-rows
    total.

    What ``executemany`` does, faster: its value-by-value escaping through generic dispatch
    costs more than the database's own work on these batches (see ``python -m bench mysql``).
    """
    affected = 0
    for part in chunks(rows, INSERT_ROWS_MAX):
        await cur.execute(multi_row_insert(statement, part))
        affected += max(int(cur.rowcount), 0)
    return affected


# --- the writers the sink agents (and the benchmark) use --------------------------------------


@dataclass
class SinkOutcome:
    """What one sink batch did: rows written per table and items that could not be stored."""

    written: Counter[str]
    rejected: int


async def _store_observations(cur: aiomysql.Cursor, batch: Sequence[Observation]) -> Counter[str]:
    keys = {(o.app_id, o.cc) for o in batch}
    await insert_rows(cur, INSERT_APPS, app_rows(o.app_id for o in batch))
    open_periods: dict[tuple[int, str], Period] = {}
    for app_ids in chunks(sorted({a for a, _ in keys}), IN_LIST_MAX):
        await cur.execute(select_open_periods(len(app_ids)), app_ids)
        for row in await cur.fetchall():
            p = Period.from_row(row)
            key = (p.app_id, p.cc)
            if key in keys and (
                key not in open_periods or p.valid_from > open_periods[key].valid_from
            ):
                open_periods[key] = p
    history = plan_history(open_periods, batch)
    await insert_rows(cur, UPSERT_PRICE_HISTORY, history)
    await insert_rows(cur, UPSERT_PRICE_LOWS, low_rows(history))
    current = price_current_rows(batch)
    await insert_rows(cur, UPSERT_PRICE_CURRENT, current)
    # The end of a discount GetItems answered before this price row was written. Only a
    # discount has one (``discount_ends`` holds discounts, and the copy matches its prices):
    # a first sweep's batch asks for its apps on sale, not for every app.
    regions: dict[str, list[int]] = {}
    discounted = {
        (o.app_id, o.cc)
        for o in batch
        if discounted_offer(o.app_id, o.initial, o.final, o.discount_percent) is not None
    }
    for app_id, cc in sorted(discounted):
        regions.setdefault(cc, []).append(app_id)
    for cc, app_ids in sorted(regions.items()):
        await discount_ends.sync_current(cur, cc, app_ids)
    return Counter({"price_current": len(current), "price_history": len(history)})


async def _store_batches(cur: aiomysql.Cursor, batch: Sequence[ObservedBatch]) -> Counter[str]:
    stored = [o for b in batch for o in b.stored()]
    written = await _store_observations(cur, stored) if stored else Counter()
    written["price_checks"] = await insert_rows(cur, INSERT_PRICE_CHECKS, price_check_rows(batch))
    return written


async def _store_changes(cur: aiomysql.Cursor, batch: Sequence[PriceChange]) -> Counter[str]:
    await insert_rows(cur, INSERT_APPS, app_rows(e.app_id for e in batch))
    inserted = await insert_rows(cur, INSERT_PRICE_CHANGES, price_change_rows(batch))
    for cc, events in sorted(discount_ends.by_region(batch).items()):
        # The end of a discount GetItems answered before its change row was written.
        await discount_ends.sync_changes(cur, cc, sorted({e.app_id for e in events}))
    return Counter({"price_changes": inserted})


async def write_observations(db: Database, batch: Sequence[Observation]) -> SinkOutcome:
    """``apps``, ``price_history`` and ``price_current`` for a batch, in one transaction."""
    return await _write(db, "price_current", batch, observation_problem, _store_observations)


async def write_batches(db: Database, batches: Sequence[ObservedBatch]) -> SinkOutcome:
    """``price_checks`` for every batch record; ``apps``, ``price_history`` and ``price_current``
    for the observations change detection flagged as news; all in one transaction.

    An unchanged price is not written again: ``price_current.observed_at`` stays the time its
    price was first observed, and the batch's row of ``price_checks`` says when it was checked.
    """
    kept: list[ObservedBatch] = []
    rejected = 0
    for b in batches:
        problems = {id(o): why for o in b.stored() if (why := observation_problem(o)) is not None}
        for o in b.stored():
            if id(o) in problems:
                rejected += 1
                db.metrics.sink_rejected_rows.labels("price_current", "invalid").inc()
                logger.error("price_current sink: rejected %r: %s", o, problems[id(o)])
        if problems:
            pairs = [
                (o, n) for o, n in zip(b.observations, b.news, strict=True) if id(o) not in problems
            ]
            b = replace(b, observations=[o for o, _ in pairs], news=[n for _, n in pairs])
        if b.observations or b.checked:
            kept.append(b)
    outcome = await _write(db, "price_current", kept, check_problem, _store_batches)
    return SinkOutcome(outcome.written, outcome.rejected + rejected)


async def write_changes(db: Database, batch: Sequence[PriceChange]) -> SinkOutcome:
    """``apps`` and ``price_changes`` for a batch, in one transaction."""
    return await _write(db, "price_changes", batch, change_problem, _store_changes)


async def _write(
    db: Database,
    sink: str,
    batch: Sequence[T],
    problem: Callable[[T], str | None],
    store: Callable[[aiomysql.Cursor, Sequence[T]], Awaitable[Counter[str]]],
) -> SinkOutcome:
    valid: list[T] = []
    rejected = 0
    for item in batch:
        why = problem(item)
        if why is None:
            valid.append(item)
        else:
            rejected += 1
            db.metrics.sink_rejected_rows.labels(sink, "invalid").inc()
            logger.error("%s sink: rejected %r: %s", sink, item, why)
    result = await db.write_batch(sink, valid, store)
    for item, why in result.rejected:
        rejected += 1
        db.metrics.sink_rejected_rows.labels(sink, "refused").inc()
        logger.error("%s sink: the database refused %r: %s", sink, item, why)
    for table, n in result.written.items():
        db.metrics.sink_rows.labels(table).inc(n)
    return SinkOutcome(result.written, rejected)
