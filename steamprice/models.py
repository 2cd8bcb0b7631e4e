"""Records carried by the topics and held in the tables (data only, no behaviour)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
from faust.serializers import codecs

# Shared Record options: JSON on the wire, ISO-8601 datetimes parsed back into aware datetimes,
# no Faust metadata blob in every message (keeps `kcat` output readable and messages small).
_OPTIONS = {"serializer": "json", "isodates": True, "include_metadata": False}


# Not frozen: a frozen class costs four times as much to build (once per app of every sweep).
@dataclass(slots=True)
class ScheduleCommand:
    """A request to the scheduler about one app.

    ``op`` is ``seed`` (a user asked: check now), ``recheck`` (the timer found it due), ``failed``
    (the crawler gave up on it, ``reason`` says why), ``retry`` (`steamprice retry-failed`),
    ``priced`` (the crawler has an answer in every region) or ``changed`` (the app-list poller
    saw ``change_number``, Steam's ``price_change_number``, with ``modified_at``). A ``seed``
    carries ``sent_at``, when it was put on the seed topic: a request made after that covers it.
    Not a Record: commands travel in batches of one partition (``steamprice.batches``), and the
    schedule agent reads one per app of every sweep.
    """

    app_id: int
    op: str
    at: datetime
    reason: str = ""
    change_number: int | None = None
    modified_at: datetime | None = None
    sent_at: datetime | None = None


# Not frozen: a frozen class costs four times as much to build (once per app of every sweep).
@dataclass(slots=True)
class Observation:
    """A normalised price observation of one app in one region.

    Prices are integers in Steam's x100 units; they are ``None`` unless ``status == "priced"``.
    ``obs_id`` is stable for one fetch, so a redelivered observation is recognised downstream.
    Not a Record: observations travel in batches (``steamprice.batches``), and a plain class
    costs less than half as much to build, once per app and region of every sweep.
    """

    app_id: int
    cc: str
    status: str
    currency: str | None
    initial: int | None
    final: int | None
    discount_percent: int | None
    observed_at: datetime
    obs_id: str


class PriceChange(faust.Record, **_OPTIONS):
    """A detected change of one app's price in one region; ``event_id`` is stable.

    ``previous_observed_at`` is when the old state was first observed (it held since then).
    The historical-low fields compare the new final price with the history before this change,
    in the same currency (a currency change resets the history and sets no flag).
    """

    event_id: str
    app_id: int
    cc: str
    kind: str
    old_status: str
    new_status: str
    old_currency: str | None
    new_currency: str | None
    old_initial: int | None
    old_final: int | None
    old_discount: int | None
    new_initial: int | None
    new_final: int | None
    new_discount: int | None
    observed_at: datetime
    previous_observed_at: datetime
    new_historical_low: bool = False
    matches_historical_low: bool = False
    # Lowest final price ever (after this change) and lowest of the 90 days before it.
    historical_low: int | None = None
    lowest_90d: int | None = None
    # When the new discount ends, as Steam announces it (GetItems; UTC). None when not known
    # yet: the notifier looks it up when it sends, and price_changes gets it when it comes.
    discount_ends_at: datetime | None = None


class SeenObservation(faust.Record, **_OPTIONS):
    """An observation already applied to a price state, and the event it produced (if any)."""

    obs_id: str
    event: PriceChange | None = None


class PriceState(faust.Record, **_OPTIONS):
    """Last known price of one (app, region), written only when it changes.

    ``observed_at`` is when this price was first observed; identical later observations are
    not written (nothing to remember), which keeps the changelog to real changes.
    """

    app_id: int
    cc: str
    status: str
    currency: str | None
    initial: int | None
    final: int | None
    discount_percent: int | None
    observed_at: datetime
    # The last few observations applied, so a redelivered one re-emits its event (not nothing).
    recent: list[SeenObservation] = []  # noqa: RUF012 (faust copies field defaults)


class PricePeriod(faust.Record, **_OPTIONS):
    """A final price that held from ``start`` until the next period's start."""

    final: int
    start: datetime


class PriceHistory(faust.Record, **_OPTIONS):
    """Price history of one (app, region) in one currency: lows, recent periods and changes."""

    app_id: int
    cc: str
    currency: str
    low_final: int
    low_at: datetime
    # Priced periods covering at least the last 90 days (older ones are pruned), oldest first.
    periods: list[PricePeriod] = []  # noqa: RUF012
    # The last few changes, newest last.
    changes: list[PriceChange] = []  # noqa: RUF012


@dataclass(slots=True)
class AppState:
    """Schedule and health of one tracked app.

    ``next_due`` is when to dispatch it next; while ``pending`` (dispatched, no answer yet) it is
    the deadline after which an unanswered request is sent again. ``last_result`` is ``ok`` or
    ``error`` (empty before the first answer). ``change_number`` is the last
    ``price_change_number`` seen in the app list; ``priority`` marks an app whose price moved, to
    be re-priced ahead of the sweep. ``recheck_at`` is when a re-check asked for by a seed inside
    the seed dedupe window is due (None: no re-check waits).

    Not a Record: the schedule agent reads, copies and writes one twice per app of a first sweep
    (seed, then priced), and a Record costs five times as much to build and decode, fifteen
    times as much to copy. The table holds :meth:`to_data` (the same JSON a Record of these
    fields had, so states written by earlier versions read back unchanged) and
    :meth:`from_data` reads it.
    """

    app_id: int
    tracked_since: datetime
    next_due: datetime
    last_requested: datetime | None = None
    failures: int = 0
    failed: bool = False
    last_error: str = ""
    pending: bool = False
    last_priced: datetime | None = None
    last_result: str = ""
    change_number: int | None = None
    priority: bool = False
    recheck_at: datetime | None = None

    def to_data(self) -> dict[str, Any]:
        """The table value: every field, times as datetimes (Faust's JSON writes them ISO)."""
        return {
            "app_id": self.app_id,
            "tracked_since": self.tracked_since,
            "next_due": self.next_due,
            "last_requested": self.last_requested,
            "failures": self.failures,
            "failed": self.failed,
            "last_error": self.last_error,
            "pending": self.pending,
            "last_priced": self.last_priced,
            "last_result": self.last_result,
            "change_number": self.change_number,
            "priority": self.priority,
            "recheck_at": self.recheck_at,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> AppState:
        """A state from its table value (ISO times or datetimes; missing fields: defaults)."""
        get = data.get
        return cls(
            int(data["app_id"]),
            _moment(data["tracked_since"]),
            _moment(data["next_due"]),
            _maybe_moment(get("last_requested")),
            get("failures", 0),
            get("failed", False),
            get("last_error", ""),
            get("pending", False),
            _maybe_moment(get("last_priced")),
            get("last_result", ""),
            get("change_number"),
            get("priority", False),
            _maybe_moment(get("recheck_at")),
        )

    def dumps(self) -> bytes:
        """The bytes the table writes for this state (its changelog value)."""
        value: bytes = codecs.dumps("json", self.to_data())
        return value

    def copy(self) -> AppState:
        return AppState(
            self.app_id,
            self.tracked_since,
            self.next_due,
            self.last_requested,
            self.failures,
            self.failed,
            self.last_error,
            self.pending,
            self.last_priced,
            self.last_result,
            self.change_number,
            self.priority,
            self.recheck_at,
        )


def _moment(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _maybe_moment(value: datetime | str | None) -> datetime | None:
    return None if value is None else _moment(value)


class FailedInput(faust.Record, **_OPTIONS):
    """What goes to ``app-ids-failed``: the offending input (or app) and why."""

    reason: str
    at: datetime
    app_id: int | None = None
    raw: str = ""
