"""Normalising observations and detecting price changes (pure functions, no Faust app).

Everything here is deterministic in its inputs: the same observation applied to the same state
yields the same new state and the same event (with the same ``event_id``), which is what makes
at-least-once delivery safe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from steamprice.models import (
    Observation,
    PriceChange,
    PriceHistory,
    PricePeriod,
    PriceState,
    SeenObservation,
)
from steamprice.steam import NO_PRICE, PRICED, UNKNOWN, ParsedEntry, parse_entry

# How many applied observations a state remembers, to re-emit events of redelivered ones.
RECENT_OBSERVATIONS = 8
# How many changes a history keeps, and how far back "the lowest of the last days" looks.
LAST_CHANGES = 5
HISTORY_WINDOW = timedelta(days=90)

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


def observation_id(app_id: int, cc: str, fetched_at: datetime, stamp: str = "") -> str:
    """Stable id of one fetch of one app in one region (``stamp``: ``fetched_at.isoformat()``,
    given when known: a batch computes it once for all its apps)."""
    # The digest of "app_id|cc|stamp", as _digest makes it (one string, built once).
    key = f"{app_id}|{cc}|{stamp or fetched_at.isoformat()}"
    return hashlib.sha1(key.encode()).hexdigest()[:24]


def event_id(app_id: int, cc: str, obs_id: str) -> str:
    """Stable id of the change an observation caused: a replay cannot create a second one."""
    return _digest("change", app_id, cc, obs_id)


def normalize(
    app_id: int, cc: str, fetched_at: datetime, entry: str, stamp: str = ""
) -> tuple[Observation, str]:
    """Turn one app's raw Steam entry into an observation; the second value names any oddity."""
    parsed = parse_entry(entry)
    return observed(app_id, cc, fetched_at, parsed, stamp), parsed.problem


def observed(
    app_id: int, cc: str, fetched_at: datetime, parsed: ParsedEntry, stamp: str = ""
) -> Observation:
    """The observation of an entry :func:`~steamprice.steam.parse_entry` read."""
    return Observation(
        app_id=app_id,
        cc=cc,
        status=parsed.status,
        currency=parsed.currency,
        initial=parsed.initial,
        final=parsed.final,
        discount_percent=parsed.discount_percent,
        observed_at=fetched_at,
        obs_id=observation_id(app_id, cc, fetched_at, stamp),
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


def fingerprint(
    status: str, currency: str | None, initial: int | None, final: int | None, discount: int | None
) -> tuple[object, ...]:
    """What makes two observations the same price (a raw discount with no real cut is none)."""
    return (status, currency, initial, final, effective_discount(initial, final, discount))


def _same(prev: PriceState, obs: Observation) -> bool:
    return fingerprint(
        prev.status, prev.currency, prev.initial, prev.final, prev.discount_percent
    ) == fingerprint(obs.status, obs.currency, obs.initial, obs.final, obs.discount_percent)


def lowest_since(history: PriceHistory, since: datetime) -> int | None:
    """Lowest final price of the periods that were current at some time after ``since``."""
    finals = [
        p.final
        for p, nxt in zip(history.periods, [*history.periods[1:], None], strict=True)
        if nxt is None or nxt.start > since
    ]
    return min(finals) if finals else None


def update_history(history: PriceHistory | None, obs: Observation) -> PriceHistory | None:
    """The history after a priced observation (a new currency starts a new history).

    Returns None when there is nothing to write (an unpriced observation).
    """
    if obs.status != PRICED or obs.final is None or obs.currency is None:
        return None
    if history is None or history.currency != obs.currency:
        return PriceHistory(
            app_id=obs.app_id,
            cc=obs.cc,
            currency=obs.currency,
            low_final=obs.final,
            low_at=obs.observed_at,
            periods=[PricePeriod(final=obs.final, start=obs.observed_at)],
            changes=[],
        )
    low_final, low_at = history.low_final, history.low_at
    if obs.final < low_final:
        low_final, low_at = obs.final, obs.observed_at
    periods = list(history.periods)
    if not periods or periods[-1].final != obs.final:
        periods.append(PricePeriod(final=obs.final, start=obs.observed_at))
    # Keep the periods that overlap the window: drop the oldest while the next one already
    # started before the window did.
    horizon = obs.observed_at - HISTORY_WINDOW
    while len(periods) > 1 and periods[1].start <= horizon:
        periods.pop(0)
    return PriceHistory(
        app_id=history.app_id,
        cc=history.cc,
        currency=history.currency,
        low_final=low_final,
        low_at=low_at,
        periods=periods,
        changes=list(history.changes),
    )


def detect_change(
    prev: PriceState | None, obs: Observation, history: PriceHistory | None = None
) -> PriceChange | None:
    """The change ``obs`` reveals against ``prev`` (None for a first or identical observation).

    ``history`` is the (app, region) history before ``obs``: it decides the low-price flags.
    """
    if prev is None:
        return None
    kind = _kind(prev, obs)
    if kind is None:
        return None
    comparable = (
        obs.status == PRICED
        and kind != CURRENCY_CHANGED
        and obs.final is not None
        and history is not None
        and history.currency == obs.currency
    )
    low = history.low_final if comparable and history is not None else None
    after = update_history(history, obs) if comparable else None
    return PriceChange(
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
        new_historical_low=low is not None and obs.final is not None and obs.final < low,
        matches_historical_low=low is not None and obs.final == low,
        historical_low=after.low_final if after is not None else None,
        lowest_90d=(
            lowest_since(history, obs.observed_at - HISTORY_WINDOW)
            if comparable and history is not None
            else None
        ),
    )


# Not frozen: a frozen class costs four times as much to build (once per app of every sweep).
@dataclass(slots=True)
class Applied:
    """What applying one observation means: table values to write (None: leave) and events.

    ``news``: the observation changed the last known price (or was the first), or is a
    redelivery of one that did; the MySQL sink stores exactly these.
    """

    state: PriceState | None = None
    history: PriceHistory | None = None
    events: list[PriceChange] = field(default_factory=list)
    news: bool = False
    # The observation was applied before (its ``obs_id`` is in the state): a redelivery.
    redelivered: bool = False


def history_of(state: PriceState) -> PriceHistory | None:
    """The history a priced state implies while none was written: its own first period.

    A first observation writes only the state (one table write, not two, for every app and
    region of a first sweep); the history is written at the first change, starting from this.
    """
    if state.status != PRICED or state.final is None or state.currency is None:
        return None
    return PriceHistory(
        app_id=state.app_id,
        cc=state.cc,
        currency=state.currency,
        low_final=state.final,
        low_at=state.observed_at,
        periods=[PricePeriod(final=state.final, start=state.observed_at)],
        changes=[],
    )


def apply_observation(
    prev: PriceState | None,
    obs: Observation,
    load_history: Callable[[], PriceHistory | None] = lambda: None,
) -> Applied:
    """Apply one observation idempotently.

    A redelivered observation (its ``obs_id`` already applied) re-emits the same event, because
    the crash that caused the redelivery may have come between the table write and the send.
    An observation older than the state, or identical to it, writes nothing and emits nothing.
    ``load_history`` is only called when the history is needed (a change); a first observation
    writes no history (:func:`history_of` stands for it until the first change).
    """
    if prev is not None:
        for seen in prev.recent:
            if seen.obs_id == obs.obs_id:
                events = [seen.event] if seen.event is not None else []
                return Applied(events=events, news=True, redelivered=True)
        if obs.observed_at < prev.observed_at or _same(prev, obs):
            return Applied()
    history: PriceHistory | None = None
    new_history: PriceHistory | None = None
    if prev is not None and (obs.status == PRICED or prev.status == PRICED):
        stored = load_history()
        history = stored if stored is not None else history_of(prev)
        if obs.status != PRICED and stored is None:
            new_history = history  # kept for the next priced period: write what it stood for
    if obs.status == PRICED:
        event = detect_change(prev, obs, history)
        if prev is not None:
            new_history = update_history(history, obs)
            if new_history is not None and event is not None:
                new_history.changes = [*new_history.changes, event][-LAST_CHANGES:]
    else:
        event = detect_change(prev, obs, None)
    recent = list(prev.recent) if prev is not None else []
    state = PriceState(
        app_id=obs.app_id,
        cc=obs.cc,
        status=obs.status,
        currency=obs.currency,
        initial=obs.initial,
        final=obs.final,
        discount_percent=obs.discount_percent,
        observed_at=obs.observed_at,
        recent=[*recent, SeenObservation(obs_id=obs.obs_id, event=event)][-RECENT_OBSERVATIONS:],
    )
    return Applied(state, new_history, [event] if event is not None else [], news=True)


def _stored_time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else _iso_time(value)


@lru_cache(maxsize=256)
def _iso_time(text: str) -> datetime:
    return datetime.fromisoformat(text)  # the apps of a batch share one stored time or a few


def _stored_price_is(stored: Mapping[str, Any], seen: Observation | ParsedEntry) -> bool:
    """Whether the stored JSON of a PriceState holds the price ``seen`` shows (as
    :func:`fingerprint` compares them, field by field: no tuples built, once per app of a
    sweep)."""
    return bool(
        stored["status"] == seen.status
        and stored["currency"] == seen.currency
        and stored["initial"] == seen.initial
        and stored["final"] == seen.final
        and effective_discount(stored["initial"], stored["final"], stored["discount_percent"])
        == effective_discount(seen.initial, seen.final, seen.discount_percent)
    )


def unchanged(stored: Mapping[str, Any], parsed: ParsedEntry, fetched_at: datetime) -> bool:
    """Whether an entry fetched at ``fetched_at`` leaves the stored state as it is, and cannot
    be one of the observations the state was made of: :func:`apply_stored` answers
    ``Applied()`` then, and the observation itself (its id, its Record) is not needed.

    A re-sweep of an unchanged catalog is nearly only such entries. Every observation a state
    lists in ``recent`` was applied at or before the state's ``observed_at`` (an older one is
    never applied, and each applied one becomes the state), so a later fetch is no redelivery.
    """
    return _stored_price_is(stored, parsed) and fetched_at > _stored_time(stored["observed_at"])


def settled(stored: Mapping[str, Any], obs: Observation) -> Applied | None:
    """:func:`apply_observation`'s answer when ``obs`` changes nothing, or None.

    Read straight off the stored JSON of a :class:`PriceState`, without building the Record
    (about five times the cost of the JSON itself): a sweep of an unchanged catalog is almost
    only such observations.
    """
    for seen in stored.get("recent") or ():
        if seen.get("obs_id") == obs.obs_id:
            event = seen.get("event")
            events = [PriceChange.from_data(event)] if event else []
            return Applied(events=events, news=True, redelivered=True)
    # The same price first: it is the common case, and the stored time need not be parsed then.
    if _stored_price_is(stored, obs) or obs.observed_at < _stored_time(stored["observed_at"]):
        return Applied()
    return None


def apply_stored(
    stored: PriceState | Mapping[str, Any] | None,
    obs: Observation,
    load_history: Callable[[], PriceHistory | None] = lambda: None,
) -> Applied:
    """:func:`apply_observation` on a state as the table returns it: JSON (RocksDB) or a Record.

    The same answer either way; the Record is only built when the observation is applied.
    """
    if type(stored) is dict or isinstance(stored, Mapping):  # a dict, checked at C speed first
        quick = settled(stored, obs)
        if quick is not None:
            return quick
        stored = PriceState.from_data(dict(stored))
    return apply_observation(stored, obs, load_history)


def current_since(
    stored: PriceState | Mapping[str, Any] | None, applied: Applied, obs: Observation
) -> datetime | None:
    """When the price ``obs`` shows was first observed, if it is still the current price.

    That time (``price_current.observed_at``) and the prices identify a discount for its end
    date. None when the state has moved on past ``obs`` (a stale or redelivered observation).
    """
    state: PriceState | Mapping[str, Any] | None = (
        applied.state if applied.state is not None else stored
    )
    if state is None:
        return None
    if isinstance(state, Mapping):
        current = fingerprint(
            state["status"],
            state["currency"],
            state["initial"],
            state["final"],
            state["discount_percent"],
        )
        since = _stored_time(state["observed_at"])
    else:
        current = fingerprint(
            state.status, state.currency, state.initial, state.final, state.discount_percent
        )
        since = state.observed_at
    seen = fingerprint(obs.status, obs.currency, obs.initial, obs.final, obs.discount_percent)
    return since if current == seen else None
