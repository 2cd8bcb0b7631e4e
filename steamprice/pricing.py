"""Normalising observations and detecting price changes (pure functions, no Faust app).

Everything here is deterministic in its inputs: the same observation applied to the same state
yields the same new state and the same event (with the same ``event_id``), which is what makes
at-least-once delivery safe.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from steamprice.models import Observation, PriceChange, PriceState, RawPrice, SeenObservation
from steamprice.steam import NO_PRICE, PRICED, UNKNOWN, parse_entry

# How many applied observations a state remembers, to re-emit events of redelivered ones.
RECENT_OBSERVATIONS = 8

DISCOUNT_STARTED = "discount_started"
DISCOUNT_ENDED = "discount_ended"
DISCOUNT_CHANGED = "discount_changed"
LIST_PRICE_INCREASED = "list_price_increased"
LIST_PRICE_DECREASED = "list_price_decreased"
BECAME_PRICED = "became_priced"
BECAME_UNPRICED = "became_unpriced"
BECAME_UNKNOWN = "became_unknown"
CURRENCY_CHANGED = "currency_changed"
KINDS = (
    DISCOUNT_STARTED,
    DISCOUNT_ENDED,
    DISCOUNT_CHANGED,
    LIST_PRICE_INCREASED,
    LIST_PRICE_DECREASED,
    BECAME_PRICED,
    BECAME_UNPRICED,
    BECAME_UNKNOWN,
    CURRENCY_CHANGED,
)


def _digest(*parts: object) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()


def observation_id(app_id: int, cc: str, fetched_at: datetime) -> str:
    """Stable id of one fetch of one app in one region."""
    return _digest(app_id, cc, fetched_at.isoformat())[:24]


def event_id(app_id: int, cc: str, obs_id: str) -> str:
    """Stable id of the change an observation caused: a replay cannot create a second one."""
    return _digest("change", app_id, cc, obs_id)


def normalize(raw: RawPrice) -> tuple[Observation, str]:
    """Turn a raw Steam entry into an observation; the second value names any oddity found."""
    parsed = parse_entry(raw.entry)
    return (
        Observation(
            app_id=raw.app_id,
            cc=raw.cc,
            status=parsed.status,
            currency=parsed.currency,
            initial=parsed.initial,
            final=parsed.final,
            discount_percent=parsed.discount_percent,
            observed_at=raw.fetched_at,
            obs_id=observation_id(raw.app_id, raw.cc, raw.fetched_at),
        ),
        parsed.problem,
    )


def effective_discount(initial: int | None, final: int | None, discount: int | None) -> int:
    """The real discount: a percentage with ``final >= initial`` (free-to-keep promos) is none."""
    if initial is None or final is None or not discount or final >= initial:
        return 0
    return discount


def _kind(prev: PriceState, obs: Observation) -> str | None:
    if obs.status != prev.status:
        return {PRICED: BECAME_PRICED, NO_PRICE: BECAME_UNPRICED, UNKNOWN: BECAME_UNKNOWN}[
            obs.status
        ]
    if obs.status != PRICED:
        return None
    if obs.currency != prev.currency:
        return CURRENCY_CHANGED
    old_d = effective_discount(prev.initial, prev.final, prev.discount_percent)
    new_d = effective_discount(obs.initial, obs.final, obs.discount_percent)
    if (prev.initial, prev.final, old_d) == (obs.initial, obs.final, new_d):
        return None
    if not old_d and new_d:
        return DISCOUNT_STARTED
    if old_d and not new_d:
        return DISCOUNT_ENDED
    if old_d and new_d:
        return DISCOUNT_CHANGED
    # Neither discounted: the list price moved (or, for free-to-keep oddities, the final price).
    old_p = prev.initial if prev.initial != obs.initial else prev.final
    new_p = obs.initial if prev.initial != obs.initial else obs.final
    assert old_p is not None and new_p is not None
    return LIST_PRICE_INCREASED if new_p > old_p else LIST_PRICE_DECREASED


def _state_from(obs: Observation, prev: PriceState | None) -> PriceState:
    """The state after ``obs``, carrying the historical low (reset when the currency changes)."""
    low_final, low_at = None, None
    if prev is not None and prev.currency == obs.currency:
        low_final, low_at = prev.low_final, prev.low_at
    if (
        obs.status == PRICED
        and obs.final is not None
        and (low_final is None or obs.final < low_final)
    ):
        low_final, low_at = obs.final, obs.observed_at
    return PriceState(
        app_id=obs.app_id,
        cc=obs.cc,
        status=obs.status,
        currency=obs.currency,
        initial=obs.initial,
        final=obs.final,
        discount_percent=obs.discount_percent,
        observed_at=obs.observed_at,
        low_final=low_final,
        low_at=low_at,
        recent=list(prev.recent) if prev is not None else [],
    )


def detect_change(
    prev: PriceState | None, obs: Observation
) -> tuple[PriceState, PriceChange | None]:
    """The state after ``obs`` and the change it reveals (None for a first or identical one)."""
    new = _state_from(obs, prev)
    if prev is None:
        return new, None
    kind = _kind(prev, obs)
    if kind is None:
        return new, None
    priced = obs.status == PRICED and kind != CURRENCY_CHANGED
    previous_low = prev.low_final if prev.currency == obs.currency else None
    event = PriceChange(
        event_id=event_id(obs.app_id, obs.cc, obs.obs_id),
        app_id=obs.app_id,
        cc=obs.cc,
        kind=kind,
        old_status=prev.status,
        new_status=obs.status,
        old_currency=prev.currency,
        new_currency=obs.currency,
        old_initial=prev.initial,
        old_final=prev.final,
        old_discount=prev.discount_percent,
        new_initial=obs.initial,
        new_final=obs.final,
        new_discount=obs.discount_percent,
        observed_at=obs.observed_at,
        previous_observed_at=prev.observed_at,
        new_historical_low=bool(
            priced
            and previous_low is not None
            and obs.final is not None
            and obs.final < previous_low
        ),
        matches_historical_low=bool(
            priced and previous_low is not None and obs.final == previous_low
        ),
        historical_low=new.low_final,
    )
    return new, event


def apply_observation(
    prev: PriceState | None, obs: Observation
) -> tuple[PriceState | None, list[PriceChange]]:
    """Apply one observation idempotently.

    Returns the state to store (``None``: leave the table as it is) and the events to send.
    A redelivered observation (its ``obs_id`` already applied) re-emits the same event, because
    the crash that caused the redelivery may have come between the table write and the send.
    An observation older than the state is stale and ignored.
    """
    if prev is not None:
        for seen in prev.recent:
            if seen.obs_id == obs.obs_id:
                return None, [seen.event] if seen.event is not None else []
        if obs.observed_at < prev.observed_at:
            return None, []
    new, event = detect_change(prev, obs)
    new.recent = [*new.recent, SeenObservation(obs_id=obs.obs_id, event=event)][
        -RECENT_OBSERVATIONS:
    ]
    return new, [event] if event is not None else []
