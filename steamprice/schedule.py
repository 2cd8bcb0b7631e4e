"""Seed-topic input validation and the per-app crawl schedule (pure functions).

How an app moves (``decide``): a ``seed`` (or ``retry``) dispatches it now; the dispatch marks it
``pending`` until the crawler reports ``priced`` or ``failed``. A seed is never dropped: one sent
before the last request is covered by it (a replay, a duplicate); a later one inside the seed
dedupe window of the last request, or while that request waits for its answer, is coalesced
into one re-check at the end of the window (``recheck_at``: at most one request per window, never
none). After ``priced`` it is due again one ``RECRAWL_INTERVAL`` later (a stable per-app
offset in the last 5 % of the interval keeps apps seeded together from coming due in one lump).
A ``failed`` fetch backs off exponentially; ``max_failures`` in a row park the app in the failed
state until ``retry``/``seed``. ``changed`` comes from the app-list poller: a moved
``price_change_number`` makes the app due now, ahead of the sweep. A pending request that is
never answered (a crash lost it) is re-sent after ``pending_timeout``.

:class:`DueIndex` is the in-memory view of the schedule the dispatcher reads each tick instead of
scanning the whole table; :func:`dispatch_budget` keeps the crawl queue short, so a catalog of
any size waits in the index, not in Kafka, and nothing bursts.
"""

from __future__ import annotations

import heapq
import math
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from steamprice.models import AppState, ScheduleCommand

# The seed parser lives with the quick seed command (no Faust there); its users import it here.
from steamprice.seeding import MAX_APP_ID as MAX_APP_ID
from steamprice.seeding import BadSeed as BadSeed
from steamprice.seeding import parse_seed as parse_seed

SEED, RECHECK, FAILED, RETRY = "seed", "recheck", "failed", "retry"
PRICED, CHANGED = "priced", "changed"
OPS = (SEED, RECHECK, FAILED, RETRY, PRICED, CHANGED)
# Values of AppState.last_result.
RESULT_OK, RESULT_ERROR = "ok", "error"


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    interval: timedelta
    # At most one request per app and window for seeds: a seed inside it waits for its end.
    dedupe: timedelta = timedelta(seconds=60)
    max_failures: int = 5
    retry_base: timedelta = timedelta(seconds=60)
    # Whether the app-list poller's ``changed`` starts tracking apps nobody seeded.
    track_new: bool = False

    @property
    def pending_timeout(self) -> timedelta:
        """A dispatched app with no answer after this long is dispatched again."""
        return max(self.interval, timedelta(minutes=15))


# Not frozen: a frozen class costs four times as much to build (once per app of every sweep).
@dataclass(slots=True)
class Decision:
    state: AppState | None  # None: leave the table as it is
    dispatch: bool = False  # send a crawl request now
    failed_reason: str = ""  # the app just moved to the failed state
    recheck_at: datetime | None = None  # a seed was coalesced into the re-check due then
    covered: bool = False  # a seed sent before the last request: that request answers it
    # The request answers a seed (now, or coalesced into this re-check): end dates are asked
    # again for it (steamprice.enddates.needs_end_date).
    seeded: bool = False


def _offset(app_id: int, interval: timedelta) -> timedelta:
    """A stable per-app offset of up to 5 % of the interval (taken off it: never late)."""
    return interval * ((zlib.crc32(str(app_id).encode()) % 1000) / 20000)


def _copy(state: AppState) -> AppState:
    # Table values are never mutated in place: the table only sees reassignments.
    return state.copy()


def _dispatched(
    state: AppState, now: datetime, policy: SchedulePolicy, *, seeded: bool = False
) -> Decision:
    seeded = seeded or state.recheck_at is not None  # a seed waited for this request
    state.pending = True
    state.last_requested = now
    state.next_due = now + policy.pending_timeout
    state.recheck_at = None  # any request made now covers every seed sent before it
    return Decision(state, dispatch=True, seeded=seeded)


def _seeded(state: AppState, cmd: ScheduleCommand, policy: SchedulePolicy) -> Decision:
    """A seed of a tracked app that is not parked: now, covered, or one re-check later."""
    now = cmd.at
    last = state.last_requested
    sent = min(cmd.sent_at or now, now)
    if last is not None and sent <= last:
        return Decision(None, covered=True)  # a request made after it was sent (a replay)
    window_end = now if last is None else last + policy.dedupe
    if not state.pending and now >= window_end:
        return _dispatched(state, now, policy, seeded=True)
    if state.recheck_at is not None:
        return Decision(None)  # one re-check already waits: at most one per window
    # Inside the window, or while a request waits for its answer (which may have been fetched
    # before this seed was sent): one re-check at the end of the window.
    state.recheck_at = max(window_end, now)
    if not state.pending:
        state.priority = True
        state.next_due = min(state.next_due, state.recheck_at)
    return Decision(state, recheck_at=state.recheck_at)


def _changed(state: AppState, cmd: ScheduleCommand) -> Decision:
    number = cmd.change_number
    if number is None or number == state.change_number:
        return Decision(None)
    if state.change_number is not None:
        moved = True
    else:
        # First number seen for this app: it moved only if Steam modified the app after our
        # last price (second resolution, so a change in the same second as that price is
        # left to the sweep).
        moved = cmd.modified_at is not None and (
            state.last_priced is None or cmd.modified_at > state.last_priced
        )
    state.change_number = number
    if moved and not state.pending:
        state.priority = True
        state.next_due = min(state.next_due, cmd.at)
    return Decision(state)


def decide(prev: AppState | None, cmd: ScheduleCommand, policy: SchedulePolicy) -> Decision:
    """What one schedule command does to an app's state."""
    now = cmd.at
    op = cmd.op
    if prev is None:
        if op in (SEED, RETRY) or (op == CHANGED and policy.track_new):
            state = AppState(
                app_id=cmd.app_id, tracked_since=now, next_due=now, change_number=cmd.change_number
            )
            return _dispatched(state, now, policy, seeded=op == SEED)
        return Decision(None)
    state = _copy(prev)
    if op in (SEED, RETRY):
        if op == RETRY or state.failed:
            state.failed, state.failures, state.last_error = False, 0, ""
            return _dispatched(state, now, policy, seeded=op == SEED)
        if state.pending and state.next_due <= now:
            # unanswered past the pending timeout
            return _dispatched(state, now, policy, seeded=op == SEED)
        return _seeded(state, cmd, policy)
    if state.failed:
        return Decision(None)  # parked until retry-failed or a seed
    if op == RECHECK:
        if state.next_due > now:
            return Decision(None)  # a duplicate from an earlier tick, or not due after all
        return _dispatched(state, now, policy)
    if op == PRICED:
        state.pending, state.priority = False, False
        state.failures, state.last_error = 0, ""
        state.last_priced, state.last_result = now, RESULT_OK
        state.next_due = now + policy.interval - _offset(state.app_id, policy.interval)
        if state.recheck_at is not None:  # a seed came while it waited: re-check it then
            state.priority = True
            state.next_due = min(state.next_due, state.recheck_at)
        return Decision(state)
    if op == FAILED:
        state.pending, state.priority = False, False
        state.failures += 1
        state.last_error, state.last_result = cmd.reason, RESULT_ERROR
        if state.failures >= policy.max_failures:
            state.failed, state.recheck_at = True, None  # parked until retry-failed or a seed
            return Decision(state, failed_reason=f"{state.failures} failures, last: {cmd.reason}")
        state.next_due = now + min(policy.interval, policy.retry_base * 2 ** (state.failures - 1))
        return Decision(state)
    if op == CHANGED:
        return _changed(state, cmd)
    return Decision(None)


def dispatch_budget(
    *, per_minute: float, batch_size: int, regions: int, tick_seconds: float, in_flight: int
) -> int:
    """How many due apps one tick may release: enough to keep the crawler busy for ~3 ticks.

    The crawler prices ``per_minute / regions`` batches of ``batch_size`` apps a minute; apps
    already dispatched and not yet answered count against the budget, so the crawl queue stays
    short whatever the catalog size (a 261k-app backlog waits here, in memory, ordered).
    """
    apps_per_second = per_minute / 60.0 * batch_size / max(1, regions)
    high_water = max(2 * batch_size, math.ceil(apps_per_second * tick_seconds * 3))
    return max(0, high_water - in_flight)


class DueIndex:
    """When each locally owned app is next due: a cache of the app-state table.

    Rebuilt from the table after every rebalance (the table is the truth and is recovered from
    its changelog), and kept current by the schedule agent, which calls :meth:`update` with the
    state it just wrote. So it is derived, never authoritative: losing it costs one rebuild.

    Two heaps of ``(due, app_id)`` with lazy deletion: apps whose price moved (``priority``)
    and the sweep. :meth:`pop_due` releases the changed apps first, but never more than half a
    tick's budget while sweep apps are overdue, so the safety net cannot starve.
    """

    def __init__(self, grace_seconds: float = 120.0) -> None:
        # An app released by pop_due comes back after this long if no update arrives (the
        # recheck was lost), so nothing can drop out of the schedule.
        self.grace_seconds = grace_seconds
        self.ready = False
        self._due: dict[int, tuple[float, bool]] = {}  # app -> (due timestamp, changed)
        self._heaps: dict[bool, list[tuple[float, int]]] = {False: [], True: []}
        self._failed: set[int] = set()
        self._pending: set[int] = set()

    def clear(self) -> None:
        self.ready = False
        self._due.clear()
        self._heaps = {False: [], True: []}
        self._failed.clear()
        self._pending.clear()

    def update(self, app_id: int, state: AppState | None) -> None:
        """Mirror one app's state (None: the app is no longer tracked here)."""
        self._failed.discard(app_id)
        self._pending.discard(app_id)
        if state is None or state.failed:
            self._due.pop(app_id, None)
            if state is not None:
                self._failed.add(app_id)
            return
        if state.pending:
            self._pending.add(app_id)
        self._put(app_id, state.next_due.timestamp(), state.priority and not state.pending)

    def _put(self, app_id: int, due: float, changed: bool) -> None:
        entry = (due, changed)
        if self._due.get(app_id) == entry:
            return
        self._due[app_id] = entry
        heapq.heappush(self._heaps[changed], (due, app_id))
        if sum(len(h) for h in self._heaps.values()) > 2 * len(self._due) + 1024:
            self._compact()

    def _compact(self) -> None:
        heaps: dict[bool, list[tuple[float, int]]] = {False: [], True: []}
        for app_id, (due, changed) in self._due.items():
            heaps[changed].append((due, app_id))
        for heap in heaps.values():
            heapq.heapify(heap)
        self._heaps = heaps

    def _live(self, changed: bool, item: tuple[float, int]) -> bool:
        due, app_id = item
        return self._due.get(app_id) == (due, changed)

    def _peek(self, changed: bool) -> float | None:
        heap = self._heaps[changed]
        while heap and not self._live(changed, heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _pop(self, changed: bool, now: float, limit: int, out: list[int]) -> None:
        heap = self._heaps[changed]
        taken = 0
        while taken < limit:
            due = self._peek(changed)
            if due is None or due > now:
                return
            _, app_id = heapq.heappop(heap)
            # Forget it at once: an app can sit in a heap twice with the same due time.
            del self._due[app_id]
            out.append(app_id)
            taken += 1

    def pop_due(self, now: float, limit: int) -> list[int]:
        """Up to ``limit`` due apps, changed ones first; each counts as in flight at once."""
        if limit <= 0:
            return []
        out: list[int] = []
        sweep_due = self._peek(False)
        share = limit if sweep_due is None or sweep_due > now else max(1, limit // 2)
        self._pop(True, now, share, out)
        self._pop(False, now, limit - len(out), out)
        self._pop(True, now, limit - len(out), out)
        for app_id in out:
            # Back into the sweep heap as a reminder; the schedule agent's update replaces it.
            self._put(app_id, now + self.grace_seconds, False)
            self._pending.add(app_id)
        return out

    def count_due(self, now: float) -> dict[str, int]:
        """Apps due now and not yet released, per heap (visits only the due part of a heap)."""
        counts = {}
        for changed, name in ((True, "changed"), (False, "due")):
            heap = self._heaps[changed]
            n, stack = 0, [0] if heap else []
            while stack:
                i = stack.pop()
                if heap[i][0] > now:
                    continue
                n += self._live(changed, heap[i])
                stack.extend(j for j in (2 * i + 1, 2 * i + 2) if j < len(heap))
            counts[name] = n
        return counts

    @property
    def tracked(self) -> int:
        return len(self._due) + len(self._failed)

    @property
    def failed(self) -> int:
        return len(self._failed)

    @property
    def pending(self) -> int:
        return len(self._pending)


class LogThrottle:
    """Lets ``burst`` log lines through per ``window`` seconds and counts the rest.

    A flood of garbage on the seed topic must be counted (metric) and routed (app-ids-failed)
    message by message, but a log line each would bury everything else.
    """

    def __init__(self, burst: int = 20, window: float = 60.0) -> None:
        self.burst = burst
        self.window = window
        self._start = -math.inf
        self._seen = 0
        self._suppressed = 0

    def allow(self, now: float) -> tuple[bool, int]:
        """(log this line?, lines suppressed in the window that just ended: report them now)."""
        reported = 0
        if now - self._start >= self.window:
            reported, self._suppressed = self._suppressed, 0
            self._start, self._seen = now, 0
        self._seen += 1
        if self._seen <= self.burst:
            return True, reported
        self._suppressed += 1
        return False, reported
