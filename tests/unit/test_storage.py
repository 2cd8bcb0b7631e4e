"""SQL planning of the MySQL sink (the statements themselves run on MariaDB in tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aiomysql.cursors import RE_INSERT_VALUES
from hypothesis import given, settings
from hypothesis import strategies as st
from pymysql.converters import escape_item

from steamprice.models import Observation, PriceChange, PriceHistory, PriceState
from steamprice.pricing import apply_observation
from steamprice.storage import (
    INSERT_APPS,
    INSERT_PRICE_CHANGES,
    UPSERT_PRICE_CURRENT,
    UPSERT_PRICE_HISTORY,
    Period,
    Row,
    app_rows,
    change_problem,
    multi_row_insert,
    observation_problem,
    plan_history,
    price_change_rows,
    price_current_rows,
    sql_literal,
    utc_naive,
)
from tests.support.records import observation, price_change

T = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)
N = T.replace(tzinfo=None)


def o(app_id: int = 1, minutes: int = 0, final: int | None = 1999, **fields: Any) -> Observation:
    """An observation of ``app_id``, ``minutes`` after T."""
    cc = fields.pop("cc", "us")
    at, obs_id = T + timedelta(minutes=minutes), f"{app_id}-{cc}-{minutes}"
    return observation(app_id, cc, final, at=at, obs_id=obs_id, **fields)


def change(**overrides: Any) -> PriceChange:
    """App 1 lost its price (priced -> no price) at T; its lowest of 90 days was 1."""
    fields: dict[str, Any] = {
        "event_id": "abc",
        "kind": "became_unpriced",
        "new_status": "no_price",
        "new_currency": None,
        "old_initial": 1,
        "old_final": 1,
        **dict.fromkeys(("new_initial", "new_final", "new_discount")),
        "observed_at": T,
        "previous_observed_at": T - timedelta(days=1),
        "lowest_90d": 1,
    }
    return price_change(1, **{**fields, **overrides})


def at(minutes: int) -> datetime:
    return N + timedelta(minutes=minutes)


# --- statements -------------------------------------------------------------------------------


def test_every_sink_statement_is_sent_as_one_multi_row_insert() -> None:
    # aiomysql's executemany only folds rows into one INSERT when this pattern matches;
    # otherwise it silently falls back to one round trip per row.
    for statement in (
        INSERT_APPS,
        UPSERT_PRICE_CURRENT,
        INSERT_PRICE_CHANGES,
        UPSERT_PRICE_HISTORY,
    ):
        assert RE_INSERT_VALUES.match(statement), statement


def test_statements_avoid_mysql8_only_syntax_and_silent_truncation() -> None:
    for statement in (
        INSERT_APPS,
        UPSERT_PRICE_CURRENT,
        INSERT_PRICE_CHANGES,
        UPSERT_PRICE_HISTORY,
    ):
        assert ") AS " not in statement.upper()  # the row alias MariaDB lacks
        assert "IGNORE" not in statement.upper()  # would truncate bad values instead of failing
        assert "ON DUPLICATE KEY UPDATE" in statement
    assert INSERT_PRICE_CHANGES.count("%s") == 21


def test_upsert_only_moves_forward() -> None:
    assert "VALUES(observed_at) >= observed_at" in UPSERT_PRICE_CURRENT
    assert UPSERT_PRICE_CURRENT.rstrip().endswith(
        "observed_at = GREATEST(observed_at, VALUES(observed_at))"
    )
    assert "valid_to = COALESCE(valid_to, VALUES(valid_to))" in UPSERT_PRICE_HISTORY


# --- rows -------------------------------------------------------------------------------------


def test_newest_observation_per_app_and_region_wins_within_a_batch() -> None:
    rows = price_current_rows([o(2, 5, 500), o(1, 0, 100), o(2, 1, 999)])
    assert rows == [
        (1, "us", "priced", "USD", 1999, 100, 0, at(0)),
        (2, "us", "priced", "USD", 1999, 500, 0, at(5)),
    ]


def test_times_are_stored_as_naive_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert utc_naive(datetime(2025, 1, 1, 9, 0, tzinfo=tokyo)) == datetime(2025, 1, 1, 0, 0)


def test_change_rows_are_deduplicated_by_event_id() -> None:
    e = change()
    rows = price_change_rows([e, e])
    assert len(rows) == 1
    assert rows[0][4] == "USD"  # the currency column falls back to the old currency
    assert rows[0][15] == at(-24 * 60) and rows[0][19] == 1  # previous_observed_at, lowest_90d
    assert rows[0][20] is None  # discount_ends_at: not known when the change is detected
    tokyo = timezone(timedelta(hours=9))
    ends = datetime(2025, 1, 10, 2, 0, tzinfo=tokyo)
    [row] = price_change_rows([PriceChange(**{**e.asdict(), "discount_ends_at": ends})])
    assert row[20] == datetime(2025, 1, 9, 17, 0)  # naive UTC like every DATETIME
    assert app_rows([3, 1, 3]) == [(1,), (3,)]


def test_rows_the_schema_cannot_hold_are_named_before_any_sql() -> None:
    assert observation_problem(o()) is None
    assert observation_problem(o(status="no_price")) is None
    assert "currency" in (observation_problem(o(currency="EURO")) or "")
    assert "out of range" in (observation_problem(o(discount=150)) or "")
    assert "out of range" in (observation_problem(o(final=-1)) or "")
    assert "out of range" in (observation_problem(o(final=2**32)) or "")
    assert "status" in (observation_problem(o(status="free")) or "")
    assert "app_id" in (observation_problem(o(app_id=0)) or "")
    assert change_problem(change()) is None
    assert "event_id" in (change_problem(change(event_id="x" * 41)) or "")
    assert "out of range" in (change_problem(change(lowest_90d=-5)) or "")
    assert "status" in (change_problem(change(new_status="gone")) or "")


# --- history ----------------------------------------------------------------------------------


def period(minutes: int, final: int | None, to: int | None = None, last: int | None = None) -> Row:
    status = "priced" if final is not None else "no_price"
    return (
        1, "us", at(minutes), None if to is None else at(to), status,
        "USD" if final is not None else None, 1999 if final is not None else None, final,
        0 if final is not None else None, at(minutes if last is None else last),
    )  # fmt: skip


def test_history_opens_confirms_and_closes_periods() -> None:
    rows = plan_history({}, [o(minutes=0), o(minutes=5), o(minutes=9, final=999)])
    assert rows == [period(0, 1999, to=9, last=5), period(9, 999)]


def test_history_starts_from_the_open_period_and_ignores_stale_observations() -> None:
    open_ = {(1, "us"): Period(*period(10, 999))}
    # Older than the open period: stale, as for the change agent.
    assert plan_history(open_, [o(minutes=3, final=1999)]) == []
    assert plan_history(open_, [o(minutes=10, final=999)]) == []  # a redelivery
    assert plan_history(open_, [o(minutes=20, status="no_price")]) == [
        period(10, 999, to=20),
        period(20, None),
    ]


def test_a_raw_discount_without_a_real_cut_is_the_same_price() -> None:
    rows = plan_history({}, [o(minutes=0), o(minutes=5, discount=10)])  # final == initial
    assert rows == [period(0, 1999, last=5)]


def test_history_keeps_regions_apart() -> None:
    rows = plan_history({}, [o(minutes=0, cc="us"), o(minutes=1, cc="gb", currency="GBP")])
    assert [(r[1], r[2]) for r in rows] == [("gb", at(1)), ("us", at(0))]


def upsert(table: dict[tuple[Any, ...], Row], rows: list[Row]) -> None:
    """UPSERT_PRICE_HISTORY's semantics, in memory (the integration tests run the real one)."""
    for r in rows:
        old = table.get(r[:3])
        if old is None:
            table[r[:3]] = r
        else:
            valid_to = old[3] if old[3] is not None else r[3]
            table[r[:3]] = (*old[:3], valid_to, *old[4:9], max(old[9], r[9]))


def open_periods(table: dict[tuple[Any, ...], Row]) -> dict[tuple[int, str], Period]:
    return {(r[0], r[1]): Period(*r) for r in table.values() if r[3] is None}


PRICES = st.sampled_from(
    [("priced", 1999, 0), ("priced", 999, 50), ("priced", 1499, 25), ("no_price", None, None)]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(PRICES, min_size=1, max_size=25),
    st.lists(st.integers(1, 6), min_size=1, max_size=8),
    st.lists(st.integers(0, 30), max_size=4),
)
def test_history_is_idempotent_and_agrees_with_the_change_agent(
    prices: list[tuple[str, int | None, int | None]],
    batch_sizes: list[int],
    redelivered: list[int],
) -> None:
    observations = [
        o(minutes=10 * i, status=s, final=f, initial=1999 if f else None, discount=d)
        for i, (s, f, d) in enumerate(prices)
    ]
    batches: list[list[Observation]] = []
    rest = list(observations)
    for size in batch_sizes * len(observations):
        if not rest:
            break
        batches.append(rest[:size])
        rest = rest[size:]
    if rest:
        batches.append(rest)

    once: dict[tuple[Any, ...], Row] = {}
    for batch in batches:
        upsert(once, plan_history(open_periods(once), batch))
    # At-least-once: earlier batches come again (after a crash before the commit of offsets).
    twice: dict[tuple[Any, ...], Row] = {}
    for n, batch in enumerate(batches):
        upsert(twice, plan_history(open_periods(twice), batch))
        for r in redelivered:
            if batches[: n + 1]:
                again = batches[: n + 1][r % (n + 1)]
                upsert(twice, plan_history(open_periods(twice), again))
    assert twice == once

    # One period per distinct price run, and every boundary is a change the agent reports.
    state: PriceState | None = None
    history: PriceHistory | None = None
    events = []
    for obs in observations:
        applied = apply_observation(state, obs, lambda h=history: h)
        state = applied.state or state
        history = applied.history or history
        events.extend(applied.events)
    periods = sorted(once.values(), key=lambda r: r[2])
    assert len(periods) == len(events) + 1
    assert [p[2] for p in periods[1:]] == [utc_naive(e.observed_at) for e in events]
    assert [p[3] for p in periods[:-1]] == [p[2] for p in periods[1:]]  # contiguous
    assert periods[-1][3] is None and sum(p[3] is None for p in periods) == 1


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64),
        st.text(),
        st.datetimes(min_value=datetime(1000, 1, 1)),
    )
)
def test_literals_are_exactly_what_pymysql_would_send(value: object) -> None:
    assert sql_literal(value) == escape_item(value, "utf8mb4")


def test_a_batch_becomes_one_statement_with_every_row() -> None:
    sql = multi_row_insert(INSERT_APPS, [(1,), (2,)])
    assert sql == "INSERT INTO apps (app_id) VALUES (1),(2) ON DUPLICATE KEY UPDATE app_id = app_id"
    quoted = multi_row_insert(UPSERT_PRICE_CURRENT, [(1, "us", "it's", None, 1, 2, 3, N)])
    assert "(1,'us','it\\'s',NULL,1,2,3,'2025-08-17 12:00:00')" in quoted


@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, True, False, 0, 1, 2, "us", "u's", "1", N, N + timedelta(1)]),
            st.one_of(st.none(), st.booleans(), st.integers(0, 3), st.text(max_size=3)),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_value_repeated_in_a_statement_is_written_as_each_time(rows: list[tuple]) -> None:
    # Literals are written once per distinct value: 1 and True, "1" and 1 stay apart.
    sql = multi_row_insert("INSERT INTO t (a, b) VALUES (%s, %s)", rows)
    by_row = ",".join("(" + ",".join(escape_item(v, "utf8mb4") for v in row) + ")" for row in rows)
    assert sql == "INSERT INTO t (a, b) VALUES " + by_row
