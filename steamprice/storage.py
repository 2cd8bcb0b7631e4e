"""SQL of the MySQL sink, planned as statements plus row tuples (pure; no connection here).

Every statement is idempotent under redelivery: ``price_current`` only moves forward in
``observed_at``, ``price_changes`` is keyed by the stable ``event_id``. The upsert uses
``VALUES(col)``, which MySQL 8 and MariaDB 10.11 both accept (MariaDB lacks ``AS alias``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from steamprice.models import Observation, PriceChange

Row = tuple[Any, ...]

_CURRENT_COLS = ("status", "currency", "initial_price", "final_price", "discount_percent")

UPSERT_PRICE_CURRENT = (
    "INSERT INTO price_current (app_id, cc, status, currency, initial_price, final_price,"
    " discount_percent, observed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    " ON DUPLICATE KEY UPDATE "
    # Columns are assigned left to right: observed_at must be compared before it is moved.
    + ", ".join(
        f"{c} = IF(VALUES(observed_at) >= observed_at, VALUES({c}), {c})" for c in _CURRENT_COLS
    )
    + ", observed_at = GREATEST(observed_at, VALUES(observed_at))"
)

INSERT_APPS = "INSERT IGNORE INTO apps (app_id) VALUES (%s)"

INSERT_PRICE_CHANGES = (
    "INSERT IGNORE INTO price_changes (event_id, app_id, cc, kind, currency, old_initial,"
    " old_final, old_discount, new_initial, new_final, new_discount, observed_at, old_status,"
    " new_status, old_currency, previous_observed_at, new_historical_low,"
    " matches_historical_low, historical_low)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def utc_naive(moment: datetime) -> datetime:
    """DATETIME columns hold UTC without a zone."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


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
        )
        for e in sorted(unique.values(), key=lambda e: e.event_id)
    ]


def chunks(rows: Sequence[Row], size: int = 1000) -> Iterable[Sequence[Row]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]
