"""Normalisation and change detection: examples for every kind, properties for the rules."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steamprice.batches import RawBatch, raw_record, read_raw
from steamprice.models import Observation, PriceChange, PriceHistory, PriceState
from steamprice.pricing import (
    BECAME_PRICED,
    BECAME_UNKNOWN,
    BECAME_UNPRICED,
    CURRENCY_CHANGED,
    DISCOUNT_CHANGED,
    DISCOUNT_ENDED,
    DISCOUNT_STARTED,
    LAST_CHANGES,
    LIST_PRICE_DECREASED,
    LIST_PRICE_INCREASED,
    RECENT_OBSERVATIONS,
    Applied,
    apply_observation,
    apply_stored,
    detect_change,
    effective_discount,
    event_id,
    fingerprint,
    history_of,
    lowest_since,
    normalize,
    unchanged,
    update_history,
)
from steamprice.steam import ParsedEntry
from tests.support.records import observation

T0 = datetime(2025, 8, 17, 17, 0, tzinfo=UTC)


def obs(n: int, **fields: Any) -> Observation:
    """Observation ``n`` of app 730 in the US, ``n`` hours after T0."""
    return observation(at=T0 + timedelta(hours=n), obs_id=f"obs-{n}", **fields)


class Pipe:
    """The change agent's tables, in memory: state and history per (app, region)."""

    def __init__(self) -> None:
        self.state: PriceState | None = None
        self.history: PriceHistory | None = None
        self.history_reads = 0

    def _load(self) -> PriceHistory | None:
        self.history_reads += 1
        return self.history

    def apply(self, o: Observation) -> Applied:
        applied = apply_observation(self.state, o, self._load)
        if applied.state is not None:
            self.state = applied.state
        if applied.history is not None:
            self.history = applied.history
        return applied


def run(*observations: Observation) -> tuple[Pipe, list[PriceChange]]:
    pipe = Pipe()
    events: list[PriceChange] = []
    for o in observations:
        events.extend(pipe.apply(o).events)
    return pipe, events


def kinds(*observations: Observation) -> list[str]:
    return [e.kind for e in run(*observations)[1]]


def test_normalize_gives_a_stable_observation_id() -> None:
    entry = (
        '{"success":true,"data":{"price_overview":{"currency":"USD","initial":999,'
        '"final":499,"discount_percent":50,"initial_formatted":"$9.99","final_formatted":"$4.99"}}}'
    )
    a, problem = normalize(10, "us", T0, entry)
    # Through a prices-raw record and back (a redelivery normalises the same entry again).
    again = read_raw(json.loads(json.dumps(raw_record(RawBatch("us", T0, [(10, entry)])))))
    b, _ = normalize(again.entries[0][0], again.cc, again.fetched_at, again.entries[0][1])
    assert problem == ""
    assert (a.status, a.currency, a.initial, a.final, a.discount_percent) == (
        "priced",
        "USD",
        999,
        499,
        50,
    )
    assert a.obs_id == b.obs_id
    # The ids of earlier releases: they are stored in the tables and behind every event id.
    assert a.obs_id == "fff31a2e4bfcc0ee40f41c84"
    assert event_id(10, "us", a.obs_id) == "1a10fe8f1bb53ba97f22a1e037b246bb91033725"
    assert a.observed_at == T0 and a.observed_at.tzinfo is not None


def test_first_observation_is_not_a_change() -> None:
    assert run(obs(0))[1] == []


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (obs(0), obs(1, initial=1999, final=999, discount=50), DISCOUNT_STARTED),
        (obs(0, final=999, discount=50), obs(1), DISCOUNT_ENDED),
        (obs(0, final=999, discount=50), obs(1, final=499, discount=75), DISCOUNT_CHANGED),
        (obs(0), obs(1, initial=2499, final=2499), LIST_PRICE_INCREASED),
        (obs(0), obs(1, initial=1499, final=1499), LIST_PRICE_DECREASED),
        (obs(0, status="no_price"), obs(1), BECAME_PRICED),
        (obs(0, status="unknown"), obs(1), BECAME_PRICED),
        (obs(0), obs(1, status="no_price"), BECAME_UNPRICED),
        (obs(0), obs(1, status="unknown"), BECAME_UNKNOWN),
        (obs(0, status="no_price"), obs(1, status="unknown"), BECAME_UNKNOWN),
        (obs(0), obs(1, currency="EUR", initial=1999, final=1999), CURRENCY_CHANGED),
        (obs(0), obs(1, currency="EUR", initial=999, final=999), CURRENCY_CHANGED),
    ],
)
def test_change_kinds(before: Observation, after: Observation, kind: str) -> None:
    assert kinds(before, after) == [kind]


def test_free_to_keep_quirk_is_no_discount() -> None:
    # discount_percent > 0 with final >= initial: Steam's free-to-keep promotions.
    assert effective_discount(1999, 1999, 100) == 0
    assert kinds(obs(0), obs(1, discount=100)) == []


def test_change_event_carries_old_and_new_prices() -> None:
    _, [event] = run(obs(0), obs(1, final=999, discount=50))
    assert (event.old_initial, event.old_final, event.old_discount) == (1999, 1999, 0)
    assert (event.new_initial, event.new_final, event.new_discount) == (1999, 999, 50)
    assert event.previous_observed_at == T0
    assert event.new_historical_low and not event.matches_historical_low
    assert event.historical_low == 999
    assert event.lowest_90d == 1999


def test_unpriced_change_has_null_new_prices() -> None:
    _, [event] = run(obs(0), obs(1, status="no_price"))
    assert (event.new_initial, event.new_final, event.new_discount) == (None, None, None)
    assert not event.new_historical_low and event.historical_low is None


def test_matching_the_historical_low() -> None:
    _, events = run(obs(0, final=999, discount=50), obs(1), obs(2, final=999, discount=50))
    event = events[-1]
    assert event.kind == DISCOUNT_STARTED
    assert event.matches_historical_low and not event.new_historical_low
    assert event.historical_low == 999


def test_lowest_of_the_last_90_days_forgets_older_periods() -> None:
    day = timedelta(days=1)
    history = PriceHistory(app_id=1, cc="us", currency="USD", low_final=100, low_at=T0)
    from steamprice.models import PricePeriod

    history.periods = [
        PricePeriod(final=100, start=T0),
        PricePeriod(final=500, start=T0 + 10 * day),
        PricePeriod(final=300, start=T0 + 200 * day),
    ]
    assert lowest_since(history, T0 + 5 * day) == 100  # the 100 period held until day 10
    assert lowest_since(history, T0 + 150 * day) == 300
    assert lowest_since(history, T0 + 300 * day) == 300  # the current period always counts


def test_history_prunes_periods_older_than_the_window_but_keeps_the_low() -> None:
    pipe, _ = run(
        obs(0, final=100, discount=95),
        obs(24 * 10, final=1999, discount=0),
        obs(24 * 200, final=1499, discount=25),
    )
    assert pipe.history is not None
    assert [p.final for p in pipe.history.periods] == [1999, 1499]
    assert pipe.history.low_final == 100
    assert [e.kind for e in pipe.history.changes] == [DISCOUNT_ENDED, DISCOUNT_STARTED]
    assert pipe.history.changes[-1].lowest_90d == 1999


def test_history_keeps_the_last_few_changes() -> None:
    observations = [obs(n, final=1999 - n, discount=n % 90 + 1) for n in range(LAST_CHANGES * 3)]
    pipe, events = run(*observations)
    assert pipe.history is not None
    assert [e.event_id for e in pipe.history.changes] == [e.event_id for e in events][
        -LAST_CHANGES:
    ]


def test_currency_change_starts_a_new_history() -> None:
    pipe, events = run(
        obs(0, final=999, discount=50), obs(1, currency="EUR", initial=2999, final=2999)
    )
    assert events[-1].kind == CURRENCY_CHANGED and not events[-1].new_historical_low
    assert pipe.history is not None and (pipe.history.currency, pipe.history.low_final) == (
        "EUR",
        2999,
    )


def test_identical_observations_write_nothing_and_read_no_history() -> None:
    pipe = Pipe()
    assert pipe.apply(obs(0)).state is not None
    reads = pipe.history_reads
    applied = pipe.apply(obs(1))
    assert applied == Applied()
    assert pipe.history_reads == reads
    assert pipe.state is not None and pipe.state.observed_at == T0  # held since the first


def test_redelivered_observation_re_emits_the_same_event() -> None:
    pipe = Pipe()
    pipe.apply(obs(0))
    change = obs(1, final=999, discount=50)
    [event] = pipe.apply(change).events
    # The crash came after the table write but before the send: the same message again.
    again = pipe.apply(change)
    assert again.state is None and again.history is None  # nothing new to write
    assert again.events == [event]
    # ... but flagged: the agent writes the stored values again (their changelog writes may
    # have died with the worker), which a first delivery never is.
    assert again.redelivered and not pipe.apply(obs(2, final=499, discount=75)).redelivered


def test_redelivery_of_an_older_observation_still_re_emits() -> None:
    pipe = Pipe()
    pipe.apply(obs(0))
    change = obs(1, final=999, discount=50)
    [event] = pipe.apply(change).events
    pipe.apply(obs(2, final=499, discount=75))
    assert pipe.apply(change).events == [event]


def test_stale_observation_is_ignored() -> None:
    pipe, _ = run(obs(0), obs(5, final=999, discount=50))
    assert pipe.apply(obs(3, initial=4999, final=4999)) == Applied()


def test_state_remembers_a_bounded_number_of_observations() -> None:
    pipe, _ = run(*(obs(n, final=1999 - n, discount=1) for n in range(RECENT_OBSERVATIONS * 3)))
    assert pipe.state is not None
    assert len(pipe.state.recent) == RECENT_OBSERVATIONS


def test_state_and_history_survive_serialisation() -> None:
    pipe, _ = run(obs(0), obs(1, final=999, discount=50))
    assert pipe.state is not None and pipe.history is not None
    copy = PriceState.loads(pipe.state.dumps())
    assert copy == pipe.state
    assert copy.recent[-1].event is not None and copy.recent[-1].event.kind == DISCOUNT_STARTED
    assert PriceHistory.loads(pipe.history.dumps()) == pipe.history


# Properties: random observation sequences of one (app, region).
prices = st.integers(min_value=0, max_value=100_000)
observation_values = st.one_of(
    st.tuples(
        st.just("priced"), st.sampled_from(["USD", "EUR"]), prices, prices, st.integers(0, 100)
    ),
    st.tuples(st.sampled_from(["no_price", "unknown"]), st.none(), st.none(), st.none(), st.none()),
)


def build(
    values: list[tuple[str, str | None, int | None, int | None, int | None]],
) -> list[Observation]:
    out = []
    for n, (status, currency, a, b, d) in enumerate(values):
        initial, final = (max(a, b), min(a, b)) if a is not None and b is not None else (a, b)
        out.append(
            obs(n, status=status, initial=initial, final=final, discount=d, currency=currency)
        )
    return out


def fp(o: Observation | PriceState) -> tuple[object, ...]:
    return fingerprint(o.status, o.currency, o.initial, o.final, o.discount_percent)


@settings(max_examples=300, deadline=None)
@given(st.lists(observation_values, min_size=1, max_size=30))
def test_exactly_one_event_per_real_transition(values: list) -> None:
    pipe = Pipe()
    for o in build(values):
        before = pipe.state
        events = pipe.apply(o).events
        if before is None or fp(before) == fp(o):
            assert events == []
        else:
            assert len(events) == 1
        assert pipe.state is not None and fp(pipe.state) == fp(o)


@settings(max_examples=300, deadline=None)
@given(st.lists(observation_values, min_size=1, max_size=30))
def test_currency_changes_never_yield_price_kinds(values: list) -> None:
    _, events = run(*build(values))
    for e in events:
        if e.old_status == e.new_status == "priced" and e.old_currency != e.new_currency:
            assert e.kind == CURRENCY_CHANGED
            assert not e.new_historical_low and not e.matches_historical_low


@settings(max_examples=300, deadline=None)
@given(st.lists(observation_values, min_size=1, max_size=30))
def test_historical_low_never_increases_within_a_currency(values: list) -> None:
    pipe = Pipe()
    for o in build(values):
        before = pipe.history
        pipe.apply(o)
        after = pipe.history
        if before is not None and after is not None and after.currency == before.currency:
            assert after.low_final <= before.low_final
        if after is not None and o.status == "priced" and o.currency == after.currency:
            assert o.final is not None and after.low_final <= o.final


@settings(max_examples=200, deadline=None)
@given(st.lists(observation_values, min_size=1, max_size=20))
def test_replaying_every_observation_changes_nothing(values: list) -> None:
    """At-least-once: a second delivery of any observation re-emits its own event only."""
    pipe = Pipe()
    for o in build(values):
        first = [e.event_id for e in pipe.apply(o).events]
        again = pipe.apply(o)
        assert again.state is None and again.history is None
        assert [e.event_id for e in again.events] == first


@settings(max_examples=300, deadline=None)
@given(st.lists(observation_values, min_size=1, max_size=20), st.data())
def test_the_stored_json_gives_the_same_answer_as_the_record(
    values: list, data: st.DataObject
) -> None:
    """The change agent reads price-state as JSON (RocksDB) and decides unchanged prices off it
    (``pricing.settled``): every answer must equal the Record path's, redeliveries included."""
    pipe = Pipe()
    seen: list[Observation] = []
    for o in build(values):
        candidates = [o, *seen]
        probe = candidates[data.draw(st.integers(0, len(candidates) - 1))]
        stored = json.loads(pipe.state.dumps()) if pipe.state is not None else None
        fast = apply_stored(stored, probe, pipe._load)
        slow = apply_observation(pipe.state, probe, pipe._load)
        assert fast == slow
        pipe.apply(o)
        seen.append(o)


def parsed(o: Observation) -> ParsedEntry:
    return ParsedEntry(o.status, o.currency, o.initial, o.final, o.discount_percent)


@settings(max_examples=300, deadline=None)
@given(st.lists(observation_values, min_size=1, max_size=20), st.data())
def test_an_unchanged_entry_is_one_that_applying_would_leave_alone(
    values: list, data: st.DataObject
) -> None:
    """The change agent skips an entry ``pricing.unchanged`` calls so, without its observation:
    applying it must write nothing and emit nothing, redeliveries and stale ones included."""
    pipe = Pipe()
    seen: list[Observation] = []
    for o in build(values):
        candidates = [o, *seen]
        probe = candidates[data.draw(st.integers(0, len(candidates) - 1))]
        if pipe.state is not None:
            stored = json.loads(pipe.state.dumps())
            if unchanged(stored, parsed(probe), probe.observed_at):
                assert apply_observation(pipe.state, probe, pipe._load) == Applied()
        pipe.apply(o)
        seen.append(o)


def test_unchanged_is_a_later_fetch_of_the_same_price_only() -> None:
    pipe, _ = run(obs(0))
    assert pipe.state is not None
    stored = json.loads(pipe.state.dumps())
    assert unchanged(stored, parsed(obs(1)), obs(1).observed_at)  # a re-sweep's case
    # The observation the state was made of (a redelivery), an older one, another price: no.
    assert not unchanged(stored, parsed(obs(0)), obs(0).observed_at)
    assert not unchanged(stored, parsed(obs(-1)), obs(-1).observed_at)
    other = obs(1, final=999, discount=50)
    assert not unchanged(stored, parsed(other), other.observed_at)


def test_the_stored_json_path_applies_a_different_price_of_the_same_instant() -> None:
    pipe, _ = run(obs(0))
    assert pipe.state is not None
    same_time = dataclasses.replace(obs(0, final=999, discount=50), obs_id="other")
    stored = json.loads(pipe.state.dumps())
    fast = apply_stored(stored, same_time)
    assert fast == apply_observation(pipe.state, same_time)
    assert fast.news and [e.kind for e in fast.events] == [DISCOUNT_STARTED]


def eager_apply(
    prev: PriceState | None, o: Observation, history: PriceHistory | None
) -> tuple[PriceState | None, PriceHistory | None, list[PriceChange]]:
    """The rule before histories were written lazily: every priced observation updated it."""
    if prev is not None and (o.observed_at < prev.observed_at or fp(prev) == fp(o)):
        return prev, history, []
    used = history if o.status == "priced" else None
    event = detect_change(prev, o, used)
    new = update_history(used, o)
    if new is not None and event is not None:
        new.changes = [*new.changes, event][-LAST_CHANGES:]
    return (
        PriceState(
            app_id=o.app_id, cc=o.cc, status=o.status, currency=o.currency, initial=o.initial,
            final=o.final, discount_percent=o.discount_percent, observed_at=o.observed_at,
        ),
        new if new is not None else history,
        [event] if event is not None else [],
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(observation_values, min_size=1, max_size=30))
def test_a_history_written_at_the_first_change_gives_the_same_events(values: list) -> None:
    """A first observation writes no history (one table write per key in a first sweep); the
    events, lows included, and the history in force are those of writing it every time."""
    pipe = Pipe()
    state: PriceState | None = None
    history: PriceHistory | None = None
    for o in build(values):
        state, history, expected = eager_apply(state, o, history)
        assert pipe.apply(o).events == expected
        assert pipe.state is not None
        in_force = pipe.history if pipe.history is not None else history_of(pipe.state)
        assert in_force == history


def test_a_first_observation_writes_the_state_only() -> None:
    applied = Pipe().apply(obs(0))
    assert applied.state is not None and applied.history is None and applied.news
