"""Seed validation and the per-app schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steamprice.models import AppState, ScheduleCommand
from steamprice.schedule import (
    FAILED,
    RECHECK,
    RETRY,
    SEED,
    BadSeed,
    SchedulePolicy,
    decide,
    parse_seed,
    record_success,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = SchedulePolicy(interval=timedelta(hours=6), max_failures=3)


def cmd(op: str, seconds: float = 0, reason: str = "") -> ScheduleCommand:
    return ScheduleCommand(app_id=730, op=op, at=T0 + timedelta(seconds=seconds), reason=reason)


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
    # Next check one interval later, spread by up to 5 %.
    assert timedelta(hours=6) <= d.state.next_due - T0 <= timedelta(hours=6.3)


def test_seeding_twice_in_one_round_dispatches_once() -> None:
    first = decide(None, cmd(SEED), POLICY).state
    again = decide(first, cmd(SEED, seconds=5), POLICY)
    assert not again.dispatch and again.state is None
    later = decide(first, cmd(SEED, seconds=3600), POLICY)
    assert later.dispatch  # a tracked app seeded again is re-checked now


def test_recheck_only_when_due() -> None:
    state = decide(None, cmd(SEED), POLICY).state
    assert state is not None
    assert not decide(state, cmd(RECHECK, seconds=60), POLICY).dispatch
    due = decide(state, cmd(RECHECK, seconds=7 * 3600), POLICY)
    assert due.dispatch and due.state is not None
    # A duplicate recheck from the same tick is dropped.
    assert not decide(due.state, cmd(RECHECK, seconds=7 * 3600 + 1), POLICY).dispatch


def test_failures_back_off_then_move_to_failed_and_retry_resets() -> None:
    state = decide(None, cmd(SEED), POLICY).state
    d1 = decide(state, cmd(FAILED, 1, "us: HTTP 502"), POLICY)
    assert d1.state is not None and d1.state.failures == 1 and not d1.failed_reason
    assert d1.state.next_due == T0 + timedelta(seconds=1 + 60)
    d2 = decide(d1.state, cmd(FAILED, 2, "us: HTTP 502"), POLICY)
    assert d2.state is not None and d2.state.next_due == T0 + timedelta(seconds=2 + 120)
    d3 = decide(d2.state, cmd(FAILED, 3, "us: HTTP 502"), POLICY)
    assert d3.state is not None and d3.state.failed
    assert "3 failures" in d3.failed_reason and "HTTP 502" in d3.failed_reason
    # A failed app is not re-checked by the timer...
    assert not decide(d3.state, cmd(RECHECK, 10 * 3600), POLICY).dispatch
    # ...but retry-failed (or a new seed) resets it and checks it now.
    retried = decide(d3.state, cmd(RETRY, 20), POLICY)
    assert retried.dispatch and retried.state is not None
    assert (retried.state.failures, retried.state.failed) == (0, False)


def test_success_clears_failures_only_when_needed() -> None:
    state = AppState(app_id=730, tracked_since=T0, next_due=T0, failures=2, last_error="x")
    healed = record_success(state)
    assert healed is not None and healed.failures == 0 and healed.last_error == ""
    assert state.failures == 2  # the table's value is never mutated in place
    assert record_success(healed) is None
    assert record_success(None) is None


def test_commands_for_untracked_apps_are_ignored() -> None:
    assert decide(None, cmd(RECHECK), POLICY).state is None
    assert decide(None, cmd(FAILED, reason="x"), POLICY).state is None
