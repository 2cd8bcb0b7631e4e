"""Normalisation and change detection: examples for every kind, properties for the rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steamprice.models import Observation, PriceState, RawPrice
from steamprice.pricing import (
    BECAME_PRICED,
    BECAME_UNKNOWN,
    BECAME_UNPRICED,
    CURRENCY_CHANGED,
    DISCOUNT_CHANGED,
    DISCOUNT_ENDED,
    DISCOUNT_STARTED,
    LIST_PRICE_DECREASED,
    LIST_PRICE_INCREASED,
    RECENT_OBSERVATIONS,
    apply_observation,
    detect_change,
    effective_discount,
    normalize,
)

T0 = datetime(2025, 8, 17, 17, 0, tzinfo=UTC)


def obs(
    n: int,
    status: str = "priced",
    initial: int | None = 1999,
    final: int | None = 1999,
    discount: int | None = 0,
    currency: str | None = "USD",
    app_id: int = 730,
    cc: str = "us",
) -> Observation:
    priced = status == "priced"
    return Observation(
        app_id=app_id,
        cc=cc,
        status=status,
        currency=currency if priced else None,
        initial=initial if priced else None,
        final=final if priced else None,
        discount_percent=discount if priced else None,
        observed_at=T0 + timedelta(hours=n),
        obs_id=f"obs-{n}",
    )


def run(*observations: Observation) -> tuple[PriceState | None, list[str]]:
    state: PriceState | None = None
    kinds: list[str] = []
    for o in observations:
        new, events = apply_observation(state, o)
        state = new if new is not None else state
        kinds.extend(e.kind for e in events)
    return state, kinds


def test_normalize_gives_a_stable_observation_id() -> None:
    raw = RawPrice(
        app_id=10,
        cc="us",
        fetched_at=T0,
        entry='{"success":true,"data":{"price_overview":{"currency":"USD","initial":999,'
        '"final":499,"discount_percent":50,"initial_formatted":"$9.99","final_formatted":"$4.99"}}}',
    )
    a, problem = normalize(raw)
    b, _ = normalize(RawPrice.loads(raw.dumps()))
    assert problem == ""
    assert (a.status, a.currency, a.initial, a.final, a.discount_percent) == (
        "priced",
        "USD",
        999,
        499,
        50,
    )
    assert a.obs_id == b.obs_id
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
    assert run(before, after)[1] == [kind]


def test_free_to_keep_quirk_is_no_discount() -> None:
    # discount_percent > 0 with final >= initial: Steam's free-to-keep promotions.
    assert effective_discount(1999, 1999, 100) == 0
    assert run(obs(0), obs(1, discount=100))[1] == []


def test_change_event_carries_old_and_new_prices() -> None:
    state, _ = run(obs(0))
    _, event = detect_change(state, obs(1, final=999, discount=50))
    assert event is not None
    assert (event.old_initial, event.old_final, event.old_discount) == (1999, 1999, 0)
    assert (event.new_initial, event.new_final, event.new_discount) == (1999, 999, 50)
    assert event.previous_observed_at == T0
    assert event.new_historical_low and not event.matches_historical_low
    assert event.historical_low == 999


def test_unpriced_change_has_null_new_prices() -> None:
    state, _ = run(obs(0))
    _, event = detect_change(state, obs(1, status="no_price"))
    assert event is not None
    assert (event.new_initial, event.new_final, event.new_discount) == (None, None, None)


def test_matching_the_historical_low() -> None:
    state, _ = run(obs(0, final=999, discount=50), obs(1))
    _, event = detect_change(state, obs(2, final=999, discount=50))
    assert event is not None and event.kind == DISCOUNT_STARTED
    assert event.matches_historical_low and not event.new_historical_low


def test_redelivered_observation_re_emits_the_same_event() -> None:
    first, _ = apply_observation(None, obs(0))
    change = obs(1, final=999, discount=50)
    second, events = apply_observation(first, change)
    assert second is not None and len(events) == 1
    # The crash came after the table write but before the send: the same message again.
    again, replayed = apply_observation(second, change)
    assert again is None  # nothing new to write
    assert [e.event_id for e in replayed] == [events[0].event_id]
    assert replayed[0] == events[0]


def test_redelivery_of_an_older_observation_still_re_emits() -> None:
    state, _ = run(obs(0))
    assert state is not None
    change = obs(1, final=999, discount=50)
    state2, events = apply_observation(state, change)
    assert state2 is not None
    state3, _ = apply_observation(state2, obs(2, final=999, discount=50))
    assert state3 is not None
    _, replayed = apply_observation(state3, change)
    assert [e.event_id for e in replayed] == [events[0].event_id]


def test_stale_observation_is_ignored() -> None:
    state, _ = run(obs(0), obs(5))
    stale = obs(3, initial=4999, final=4999)
    new, events = apply_observation(state, stale)
    assert new is None and events == []


def test_state_remembers_a_bounded_number_of_observations() -> None:
    state, _ = run(*(obs(n) for n in range(RECENT_OBSERVATIONS * 3)))
    assert state is not None
    assert len(state.recent) == RECENT_OBSERVATIONS


def test_state_survives_serialisation() -> None:
    state, _ = run(obs(0), obs(1, final=999, discount=50))
    assert state is not None
    copy = PriceState.loads(state.dumps())
    assert copy == state
    assert copy.recent[-1].event is not None and copy.recent[-1].event.kind == DISCOUNT_STARTED


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
        out.append(obs(n, status, initial, final, d, currency))
    return out


def fingerprint(o: Observation | PriceState) -> tuple[object, ...]:
    d = effective_discount(o.initial, o.final, o.discount_percent)
    return (o.status, o.currency, o.initial, o.final, d)


@settings(max_examples=300, deadline=None)
@given(st.lists(observation_values, min_size=1, max_size=30))
def test_exactly_one_event_per_real_transition(values: list) -> None:
    observations = build(values)
    state: PriceState | None = None
    for o in observations:
        new, events = apply_observation(state, o)
        if state is None:
            assert events == []
        elif fingerprint(state) == fingerprint(o):
            assert events == []
        else:
            assert len(events) == 1
        assert new is not None
        state = new


@settings(max_examples=300, deadline=None)
@given(st.lists(observation_values, min_size=1, max_size=30))
def test_currency_changes_never_yield_price_kinds(values: list) -> None:
    state: PriceState | None = None
    for o in build(values):
        new, events = apply_observation(state, o)
        for e in events:
            if e.old_status == e.new_status == "priced" and e.old_currency != e.new_currency:
                assert e.kind == CURRENCY_CHANGED
                assert not e.new_historical_low and not e.matches_historical_low
        state = new


@settings(max_examples=300, deadline=None)
@given(st.lists(observation_values, min_size=1, max_size=30))
def test_historical_low_never_increases_within_a_currency(values: list) -> None:
    state: PriceState | None = None
    for o in build(values):
        new, _ = apply_observation(state, o)
        assert new is not None
        if state is not None and state.low_final is not None and new.currency == state.currency:
            assert new.low_final is not None and new.low_final <= state.low_final
        if new.status == "priced":
            assert new.low_final is not None and new.low_final <= (new.final or 0)
        state = new


@settings(max_examples=200, deadline=None)
@given(st.lists(observation_values, min_size=1, max_size=20))
def test_replaying_every_observation_changes_nothing(values: list) -> None:
    """At-least-once: a second delivery of any observation re-emits its own event only."""
    state: PriceState | None = None
    emitted: dict[str, list[str]] = {}
    observations = build(values)
    for o in observations:
        new, events = apply_observation(state, o)
        emitted[o.obs_id] = [e.event_id for e in events]
        state = new if new is not None else state
        _, again = apply_observation(state, o)
        assert [e.event_id for e in again] == emitted[o.obs_id]
