"""SQL planning of the MySQL sink (statements run against MariaDB in the integration tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from steamprice.models import Observation, PriceChange
from steamprice.storage import (
    UPSERT_PRICE_CURRENT,
    app_rows,
    price_change_rows,
    price_current_rows,
    utc_naive,
)

T = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)


def o(app_id: int, minutes: int, final: int) -> Observation:
    return Observation(
        app_id=app_id,
        cc="us",
        status="priced",
        currency="USD",
        initial=1999,
        final=final,
        discount_percent=0,
        observed_at=T + timedelta(minutes=minutes),
        obs_id=f"{app_id}-{minutes}",
    )


def test_newest_observation_per_app_and_region_wins_within_a_batch() -> None:
    rows = price_current_rows([o(2, 5, 500), o(1, 0, 100), o(2, 1, 999)])
    assert rows == [
        (1, "us", "priced", "USD", 1999, 100, 0, datetime(2025, 8, 17, 12, 0)),
        (2, "us", "priced", "USD", 1999, 500, 0, datetime(2025, 8, 17, 12, 5)),
    ]


def test_times_are_stored_as_naive_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert utc_naive(datetime(2025, 1, 1, 9, 0, tzinfo=tokyo)) == datetime(2025, 1, 1, 0, 0)


def test_upsert_only_moves_forward_and_avoids_the_mysql8_alias_syntax() -> None:
    assert "VALUES(observed_at) >= observed_at" in UPSERT_PRICE_CURRENT
    assert UPSERT_PRICE_CURRENT.rstrip().endswith(
        "observed_at = GREATEST(observed_at, VALUES(observed_at))"
    )
    assert " AS new" not in UPSERT_PRICE_CURRENT


def test_change_rows_are_deduplicated_by_event_id() -> None:
    e = PriceChange(
        event_id="abc",
        app_id=1,
        cc="us",
        kind="became_unpriced",
        old_status="priced",
        new_status="no_price",
        old_currency="USD",
        new_currency=None,
        old_initial=1,
        old_final=1,
        old_discount=0,
        new_initial=None,
        new_final=None,
        new_discount=None,
        observed_at=T,
        previous_observed_at=T,
    )
    rows = price_change_rows([e, e])
    assert len(rows) == 1
    assert rows[0][4] == "USD"  # the currency column falls back to the old currency
    assert app_rows([3, 1, 3]) == [(1,), (3,)]
