"""Seed validation, the per-app schedule, the due index and the dispatch budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steamprice.models import AppState, ScheduleCommand
from steamprice.schedule import (
    CHANGED,
    FAILED,
    PRICED,
    RECHECK,
    RETRY,
    SEED,
    BadSeed,
    DueIndex,
    LogThrottle,
    SchedulePolicy,
    decide,
    dispatch_budget,
    parse_seed,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = SchedulePolicy(interval=timedelta(hours=6), max_failures=3)


def cmd(
    op: str, seconds: float = 0, reason: str = "", app_id: int = 730, **kw: object
) -> ScheduleCommand:
    return ScheduleCommand(
        app_id=app_id, op=op, at=T0 + timedelta(seconds=seconds), reason=reason, **kw
    )


def run(state: AppState | None, *commands: ScheduleCommand) -> AppState | None:
    for c in commands:
        state = decide(state, c, POLICY).state or state
    return state


def priced(seconds: float = 1) -> AppState:
    state = run(None, cmd(SEED), cmd(PRICED, seconds))
    assert state is not None
    return state


@pytest.mark.parametrize(
    "value", [b"730", b" 730\n", b'{"app_id": 730}', b'{"app_id":730,"note":"x"}', "730", 730]
)
def test_accepted_seeds(value: object) -> None:
    assert parse_seed(value) == 730  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"hello", "not JSON"),
        (b"730.0", "integer"),
        (b"7.5", "integer"),
        (b'"730"', "integer"),
        (b"true", "integer"),
        (b"-1", "range"),
        (b"0", "range"),
        (b"2147483648", "range"),
        (b"99999999999999999999999", "range"),
        (b"[730]", "integer"),
        (b'{"appid": 730}', "app_id"),
        (b'{"app_id": {"nested": 1}}', "integer"),
        (b"\xff\xfe730", "UTF-8"),
        (b"7" * 5000, "too large"),
    ],
)
def test_rejected_seeds_say_why(value: bytes | None, reason: str) -> None:
    with pytest.raises(BadSeed) as err:
        parse_seed(value)
    assert reason in str(err.value)


@given(st.binary(max_size=64))
def test_any_bytes_either_parse_to_a_valid_id_or_raise_bad_seed(value: bytes) -> None:
    try:
        app_id = parse_seed(value)
    except BadSeed:
        return
    assert 1 <= app_id <= 2**31 - 1


def test_seed_tracks_and_dispatches_now() -> None:
    d = decide(None, cmd(SEED), POLICY)
    assert d.dispatch and d.state is not None
    assert d.state.tracked_since == T0 and d.state.last_requested == T0
    assert d.state.pending
    # Until the crawler answers, next_due is the deadline for sending the request again.
    assert d.state.next_due == T0 + POLICY.pending_timeout


def test_priced_schedules_the_next_check_within_one_interval() -> None:
    state = priced(seconds=30)
    assert not state.pending and state.last_result == "ok"
    assert state.last_priced == T0 + timedelta(seconds=30)
    # Due again one interval after the answer, minus a stable per-app offset of up to 5 %.
    after = state.next_due - state.last_priced
    assert timedelta(hours=6) * 0.95 <= after <= timedelta(hours=6)


def test_apps_seeded_together_come_due_spread_out() -> None:
    dues = []
    for app_id in range(1, 2001):
        state = decide(None, cmd(SEED, app_id=app_id), POLICY).state
        state = decide(state, cmd(PRICED, 5, app_id=app_id), POLICY).state
        assert state is not None
        dues.append(state.next_due)
    assert len(set(dues)) > 800  # not one lump
    assert max(dues) - min(dues) >= timedelta(hours=6) * 0.045


def seed(seconds: float, sent: float | None = None) -> ScheduleCommand:
    """A seed processed ``seconds`` after T0, put on the seed topic at ``sent`` (default: then)."""
    return cmd(SEED, seconds, sent_at=T0 + timedelta(seconds=seconds if sent is None else sent))


def test_a_tracked_app_seeded_after_the_window_is_rechecked_now() -> None:
    state = priced(seconds=2)
    later = decide(state, seed(3600), POLICY)
    assert later.dispatch and later.state is not None
    assert later.state.last_requested == T0 + timedelta(seconds=3600)
    assert later.state.recheck_at is None


def test_a_seed_inside_the_window_is_coalesced_into_one_recheck_at_its_end() -> None:
    state = priced(seconds=2)  # requested at T0, answered at T0 + 2 s
    d = decide(state, seed(5), POLICY)
    assert not d.dispatch and d.state is not None
    window_end = T0 + POLICY.dedupe
    assert d.recheck_at == window_end and d.state.recheck_at == window_end
    # Ahead of the sweep, at the end of the window; nothing sooner.
    assert d.state.priority and d.state.next_due == window_end
    assert not decide(d.state, cmd(RECHECK, 30), POLICY).dispatch
    # More seeds in the same window add nothing: one re-check, not one per seed.
    for seconds in (10, 20, 59):
        assert decide(d.state, seed(seconds), POLICY).state is None
    # The re-check goes out at the end of the window and clears the mark.
    at_end = decide(d.state, cmd(RECHECK, 60), POLICY)
    assert at_end.dispatch and at_end.state is not None
    assert at_end.seeded  # it answers the seed: end dates are asked again
    assert at_end.state.recheck_at is None and at_end.state.pending
    # Its answer schedules the sweep as usual.
    done = decide(at_end.state, cmd(PRICED, 62), POLICY).state
    assert done is not None and not done.priority and done.recheck_at is None
    assert done.next_due > T0 + timedelta(hours=5)


def test_never_more_than_one_request_per_window_for_seeds() -> None:
    """Seeds every second for five minutes: one request per window of SEED_DEDUPE_SECONDS."""
    state = priced(seconds=1)
    requests = [T0]
    for second in range(2, 300):
        for c in (seed(second), cmd(RECHECK, second)):
            d = decide(state, c, POLICY)
            state = d.state or state
            if d.dispatch:
                requests.append(c.at)
                state = decide(state, cmd(PRICED, second + 0.5), POLICY).state or state
    gaps = [b - a for a, b in pairwise(requests)]
    assert len(requests) == 5 and all(gap == POLICY.dedupe for gap in gaps), requests
    # The last seed is still owed a re-check: none is ever dropped.
    assert state.recheck_at == requests[-1] + POLICY.dedupe


def test_a_seed_while_the_request_waits_for_its_answer_is_rechecked_after_it() -> None:
    first = decide(None, cmd(SEED), POLICY).state
    assert first is not None and first.pending
    # The answer may have been fetched before this seed was sent: one more check after it.
    d = decide(first, seed(3), POLICY)
    assert not d.dispatch and d.state is not None and d.state.pending
    assert d.state.recheck_at == T0 + POLICY.dedupe
    assert d.state.next_due == first.next_due  # still the deadline of the pending request
    answered = decide(d.state, cmd(PRICED, 4), POLICY).state
    assert answered is not None and answered.priority
    assert answered.next_due == T0 + POLICY.dedupe
    assert decide(answered, cmd(RECHECK, 60), POLICY).dispatch
    # Answered after the window ended: the re-check is due at once.
    late = decide(d.state, cmd(PRICED, 600), POLICY).state
    assert late is not None and late.next_due == T0 + POLICY.dedupe
    assert decide(late, cmd(RECHECK, 600), POLICY).dispatch


def test_a_seed_sent_before_the_last_request_is_covered_by_it() -> None:
    """A seed replayed after a crash (or sent twice) asks for nothing the last request did not."""
    state = priced(seconds=2)
    replayed = decide(state, seed(30, sent=0), POLICY)
    assert not replayed.dispatch and replayed.state is None and replayed.covered
    # Long after the window too: the request that followed it already answered it.
    assert decide(state, seed(3600, sent=-1), POLICY).state is None
    # One sent a moment after the request is a new one.
    assert decide(state, seed(30, sent=0.5), POLICY).recheck_at == T0 + POLICY.dedupe


def test_a_seed_time_in_the_future_is_taken_as_now() -> None:
    state = priced(seconds=2)
    d = decide(state, seed(3600, sent=7200), POLICY)
    assert d.dispatch and d.state is not None
    assert d.state.last_requested == T0 + timedelta(seconds=3600)


def test_without_a_dedupe_window_a_seed_dispatches_at_once() -> None:
    policy = SchedulePolicy(interval=timedelta(hours=6), dedupe=timedelta(0))
    state = decide(None, cmd(SEED), policy).state
    state = decide(state, cmd(PRICED, 1), policy).state
    assert decide(state, seed(1.5), policy).dispatch


def test_a_parked_app_forgets_its_recheck_and_a_seed_brings_it_back_now() -> None:
    state = decide(None, cmd(SEED), POLICY).state
    state = decide(state, seed(3), POLICY).state
    assert state is not None and state.recheck_at is not None
    for n in range(1, 4):
        state = run(state, cmd(FAILED, n, "us: timeout"))
        if n < 3:
            state = run(state, cmd(RECHECK, 10_000 * n))
    assert state is not None and state.failed and state.recheck_at is None
    back = decide(state, seed(40_000), POLICY)
    assert back.dispatch and back.state is not None and not back.state.failed


def test_recheck_only_when_due() -> None:
    state = priced()
    assert not decide(state, cmd(RECHECK, seconds=60), POLICY).dispatch
    due = decide(state, cmd(RECHECK, seconds=7 * 3600), POLICY)
    assert due.dispatch and due.state is not None
    # A duplicate recheck from the same tick is dropped.
    assert not decide(due.state, cmd(RECHECK, seconds=7 * 3600 + 1), POLICY).dispatch


def test_an_unanswered_request_is_sent_again_after_the_pending_timeout() -> None:
    state = decide(None, cmd(SEED), POLICY).state
    assert state is not None
    timeout = POLICY.pending_timeout.total_seconds()
    assert not decide(state, cmd(RECHECK, timeout - 1), POLICY).dispatch
    assert decide(state, cmd(RECHECK, timeout), POLICY).dispatch


def test_failures_back_off_then_move_to_failed_and_retry_resets() -> None:
    state = decide(None, cmd(SEED), POLICY).state
    d1 = decide(state, cmd(FAILED, 1, "us: HTTP 502"), POLICY)
    assert d1.state is not None and d1.state.failures == 1 and not d1.failed_reason
    assert d1.state.next_due == T0 + timedelta(seconds=1 + 60)
    assert d1.state.last_result == "error" and not d1.state.pending
    d2 = decide(d1.state, cmd(FAILED, 2, "us: HTTP 502"), POLICY)
    assert d2.state is not None and d2.state.next_due == T0 + timedelta(seconds=2 + 120)
    d3 = decide(d2.state, cmd(FAILED, 3, "us: HTTP 502"), POLICY)
    assert d3.state is not None and d3.state.failed
    assert "3 failures" in d3.failed_reason and "HTTP 502" in d3.failed_reason
    # A failed app is not re-checked by the timer, and late answers leave it parked...
    assert not decide(d3.state, cmd(RECHECK, 10 * 3600), POLICY).dispatch
    assert decide(d3.state, cmd(PRICED, 11), POLICY).state is None
    assert decide(d3.state, cmd(FAILED, 11, "x"), POLICY).state is None
    # ...but retry-failed (or a new seed) resets it and checks it now.
    retried = decide(d3.state, cmd(RETRY, 20), POLICY)
    assert retried.dispatch and retried.state is not None
    assert (retried.state.failures, retried.state.failed) == (0, False)
    reseeded = decide(d3.state, cmd(SEED, 20), POLICY)
    assert reseeded.dispatch and reseeded.state is not None and not reseeded.state.failed


def test_a_success_clears_the_failure_count() -> None:
    state = run(None, cmd(SEED), cmd(FAILED, 1, "us: timeout"), cmd(RECHECK, 70))
    assert state is not None and state.failures == 1 and state.pending
    healed = decide(state, cmd(PRICED, 80), POLICY).state
    assert healed is not None and healed.failures == 0 and healed.last_error == ""


def test_commands_for_untracked_apps_are_ignored() -> None:
    assert decide(None, cmd(RECHECK), POLICY).state is None
    assert decide(None, cmd(FAILED, reason="x"), POLICY).state is None
    assert decide(None, cmd(PRICED), POLICY).state is None
    assert decide(None, cmd(CHANGED, change_number=5), POLICY).state is None


def test_a_moved_price_change_number_makes_the_app_due_now_ahead_of_the_sweep() -> None:
    state = priced()
    known = decide(state, cmd(CHANGED, 10, change_number=100, modified_at=T0), POLICY).state
    # First number seen, app modified before our price: just remembered.
    assert known is not None and known.change_number == 100 and not known.priority
    assert decide(known, cmd(CHANGED, 20, change_number=100), POLICY).state is None
    moved = decide(known, cmd(CHANGED, 30, change_number=101), POLICY).state
    assert moved is not None and moved.priority and moved.change_number == 101
    assert moved.next_due == T0 + timedelta(seconds=30)
    assert decide(moved, cmd(RECHECK, 31), POLICY).dispatch
    done = run(moved, cmd(RECHECK, 31), cmd(PRICED, 40))
    assert done is not None and not done.priority


def test_a_first_change_number_after_our_price_counts_as_moved() -> None:
    state = priced(seconds=1)
    later = T0 + timedelta(seconds=50)
    d = decide(state, cmd(CHANGED, 60, change_number=7, modified_at=later), POLICY)
    assert d.state is not None and d.state.priority


def test_a_change_of_a_waiting_app_is_only_remembered() -> None:
    state = decide(None, cmd(SEED), POLICY).state
    d = decide(state, cmd(CHANGED, 5, change_number=9, modified_at=T0), POLICY)
    assert d.state is not None and d.state.change_number == 9 and not d.state.priority


def test_changed_starts_tracking_only_when_asked() -> None:
    tracking = SchedulePolicy(interval=timedelta(hours=6), track_new=True)
    d = decide(None, cmd(CHANGED, change_number=3), tracking)
    assert d.dispatch and d.state is not None and d.state.change_number == 3


def _state(app_id: int, due: float, **kw: object) -> AppState:
    return AppState(
        app_id=app_id,
        tracked_since=T0,
        next_due=T0 + timedelta(seconds=due),
        **kw,
    )


NOW = (T0 + timedelta(seconds=1000)).timestamp()


def test_due_index_releases_due_apps_oldest_first_and_counts_them() -> None:
    index = DueIndex(grace_seconds=100)
    for app_id, due in ((1, 500), (2, 100), (3, 2000), (4, 900)):
        index.update(app_id, _state(app_id, due))
    index.update(5, _state(5, 0, failed=True))
    index.update(6, _state(6, 5000, pending=True))
    assert (index.tracked, index.failed, index.pending) == (6, 1, 1)
    assert index.count_due(NOW) == {"changed": 0, "due": 3}
    assert index.pop_due(NOW, 2) == [2, 1]
    # Released apps count as in flight until the schedule agent reports their new state.
    assert index.pending == 3 and index.count_due(NOW) == {"changed": 0, "due": 1}
    assert index.pop_due(NOW, 10) == [4]
    assert index.pop_due(NOW, 10) == []
    # A released app whose recheck got lost comes back after the grace period.
    assert sorted(index.pop_due(NOW + 101, 10)) == [1, 2, 4]
    index.update(2, _state(2, 1e6))  # the schedule agent's word replaces the reminder
    assert 2 not in index.pop_due(NOW + 1000, 10)


def test_due_index_puts_changed_apps_first_but_never_starves_the_sweep() -> None:
    index = DueIndex()
    for app_id in range(1, 11):
        index.update(app_id, _state(app_id, app_id))  # overdue sweep apps
    for app_id in range(100, 110):
        index.update(app_id, _state(app_id, 999, priority=True))
    assert index.count_due(NOW) == {"changed": 10, "due": 10}
    first = index.pop_due(NOW, 6)
    assert first == [100, 101, 102, 1, 2, 3]  # half the budget to changed apps
    index2 = DueIndex()
    for app_id in range(100, 110):
        index2.update(app_id, _state(app_id, 999, priority=True))
    index2.update(1, _state(1, 5000))  # the sweep has nothing due: all to changed apps
    assert index2.pop_due(NOW, 6) == [100, 101, 102, 103, 104, 105]


def test_due_index_forgets_failed_and_untracked_apps() -> None:
    index = DueIndex()
    index.update(1, _state(1, 0))
    index.update(1, _state(1, 0, failed=True))
    index.update(2, _state(2, 0))
    index.update(2, None)
    assert index.pop_due(NOW, 10) == []
    assert (index.tracked, index.failed) == (1, 1)
    index.clear()
    assert (index.tracked, index.ready) == (0, False)


@given(
    st.lists(
        st.tuples(
            st.integers(1, 30),
            st.integers(0, 2000),
            st.booleans(),
            st.booleans(),
            st.booleans(),
        ),
        max_size=200,
    ),
    st.integers(0, 40),
)
def test_due_index_agrees_with_a_naive_scan(
    updates: list[tuple[int, int, bool, bool, bool]], limit: int
) -> None:
    index = DueIndex()
    model: dict[int, AppState] = {}
    for app_id, due, failed, pending, priority in updates:
        state = _state(app_id, due, failed=failed, pending=pending, priority=priority)
        model[app_id] = state
        index.update(app_id, state)
    due_now = {a for a, s in model.items() if not s.failed and s.next_due.timestamp() <= NOW}
    released = index.pop_due(NOW, limit)
    assert len(released) == len(set(released)) == min(limit, len(due_now))
    assert set(released) <= due_now
    assert index.tracked == len(model)
    assert index.failed == sum(s.failed for s in model.values())


def test_dispatch_budget_keeps_the_crawl_queue_short() -> None:
    # 40 requests/min of 100 apps in one region, 10 s ticks: ~3 ticks of work.
    full = dispatch_budget(per_minute=40, batch_size=100, regions=1, tick_seconds=10, in_flight=0)
    assert full == 2000
    assert (
        dispatch_budget(per_minute=40, batch_size=100, regions=1, tick_seconds=10, in_flight=1500)
        == 500
    )
    assert (
        dispatch_budget(per_minute=40, batch_size=100, regions=4, tick_seconds=10, in_flight=9999)
        == 0
    )
    # Never less than two batches when idle, even with many regions and a fast tick.
    assert (
        dispatch_budget(per_minute=40, batch_size=100, regions=8, tick_seconds=1, in_flight=0)
        == 200
    )


def test_log_throttle_lets_a_burst_through_then_reports_what_it_held_back() -> None:
    throttle = LogThrottle(burst=3, window=60)
    shown = [throttle.allow(t)[0] for t in range(10)]
    assert shown == [True] * 3 + [False] * 7
    logged, suppressed = throttle.allow(61)
    assert logged and suppressed == 7
    assert throttle.allow(62) == (True, 0)


def test_only_requests_that_answer_a_seed_are_seeded() -> None:
    """End dates are asked again for a seed, whether dispatched at once or coalesced."""
    new = decide(None, cmd(SEED), POLICY)
    assert new.dispatch and new.seeded
    state = priced(seconds=2)
    assert decide(state, seed(3600), POLICY).seeded
    # The sweep's own re-crawl, and a re-check a change number asked for, are not seeds.
    swept = decide(state, cmd(RECHECK, 6 * 3600), POLICY)
    assert swept.dispatch and not swept.seeded
    # A seed that came while the request waited for its answer: the re-check after it is.
    waiting = decide(decide(None, cmd(SEED), POLICY).state, seed(3), POLICY).state
    answered = decide(waiting, cmd(PRICED, 4), POLICY).state
    recheck = decide(answered, cmd(RECHECK, 60), POLICY)
    assert recheck.dispatch and recheck.seeded
