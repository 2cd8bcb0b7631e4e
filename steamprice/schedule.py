"""Seed-topic input validation and the per-app crawl schedule (pure functions)."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from steamprice.models import AppState, ScheduleCommand

MAX_APP_ID = 2**31 - 1
MAX_SEED_BYTES = 1024

SEED, RECHECK, FAILED, RETRY = "seed", "recheck", "failed", "retry"


class BadSeed(ValueError):
    """A seed-topic message that is not an app id; the message is the reason."""


def parse_seed(value: bytes | str | int | dict[str, object] | None) -> int:
    """Accept a bare ``730`` or ``{"app_id": 730}``; raise :class:`BadSeed` for anything else."""
    if value is None:
        raise BadSeed("empty message")
    if isinstance(value, bytes):
        if len(value) > MAX_SEED_BYTES:
            raise BadSeed(f"message too large ({len(value)} bytes)")
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadSeed("message is not UTF-8") from None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise BadSeed("empty message")
        try:
            value = json.loads(text)
        except ValueError:
            raise BadSeed('not JSON: expected 730 or {"app_id": 730}') from None
    if isinstance(value, dict):
        if "app_id" not in value:
            raise BadSeed("object without an app_id field")
        value = value["app_id"]  # type: ignore[assignment]
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadSeed(f"app_id must be an integer, not {type(value).__name__}")
    if not 1 <= value <= MAX_APP_ID:
        raise BadSeed(f"app_id {value} is out of range 1..{MAX_APP_ID}")
    return value


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    interval: timedelta
    # A second seed of the same app within this window is the same round: no second request.
    dedupe: timedelta = timedelta(seconds=60)
    max_failures: int = 5
    retry_base: timedelta = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Decision:
    state: AppState | None  # None: leave the table as it is
    dispatch: bool = False  # send a crawl request now
    failed_reason: str = ""  # the app just moved to the failed state


def _spread(app_id: int, interval: timedelta) -> timedelta:
    """A stable offset of up to 5% of the interval so that apps seeded together drift apart."""
    return interval * ((zlib.crc32(str(app_id).encode()) % 1000) / 20000)


def _dispatched(state: AppState, now: datetime, policy: SchedulePolicy) -> Decision:
    state.last_requested = now
    state.next_due = now + policy.interval + _spread(state.app_id, policy.interval)
    return Decision(state, dispatch=True)


def decide(prev: AppState | None, cmd: ScheduleCommand, policy: SchedulePolicy) -> Decision:
    """What one schedule command does to an app's state."""
    now = cmd.at
    if prev is None:
        if cmd.op not in (SEED, RETRY):
            return Decision(None)
        prev = AppState(app_id=cmd.app_id, tracked_since=now, next_due=now)
    state = AppState.from_data(prev.asdict())
    if cmd.op in (SEED, RETRY):
        if cmd.op == RETRY or state.failed:
            state.failed, state.failures, state.last_error = False, 0, ""
        elif state.last_requested is not None and now - state.last_requested < policy.dedupe:
            return Decision(None)
        return _dispatched(state, now, policy)
    if state.failed:
        return Decision(None)
    if cmd.op == RECHECK:
        if state.next_due > now:
            return Decision(None)  # a duplicate from an earlier tick: already requested
        return _dispatched(state, now, policy)
    if cmd.op == FAILED:
        state.failures += 1
        state.last_error = cmd.reason
        if state.failures >= policy.max_failures:
            state.failed = True
            return Decision(state, failed_reason=f"{state.failures} failures, last: {cmd.reason}")
        state.next_due = now + min(policy.interval, policy.retry_base * 2 ** (state.failures - 1))
        return Decision(state)
    return Decision(None)


def record_success(prev: AppState | None) -> AppState | None:
    """After a successful price fetch: clear the failure count (None: nothing to write)."""
    if prev is None or (prev.failures == 0 and not prev.failed):
        return None
    state = AppState.from_data(prev.asdict())
    state.failures, state.failed, state.last_error = 0, False, ""
    return state
