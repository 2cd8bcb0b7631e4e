"""The batch records of the pipeline's own topics, and where they go (pure).

A record of ``prices-raw`` or ``prices-normalized`` carries the apps of one Steam answer (one
request, one region) that belong to one partition of the pipeline's topics; a record of
``schedule`` carries commands of one kind (seed, priced ...) for apps of one partition, and one of
``crawl-requests`` the apps of one partition to price. Each is sent to that partition explicitly.
So per-record costs (Faust's stream, sensors, acks, a produce) are paid once per batch, not once
per app.

Why the partition must be exactly the one the app id's key would go to: change detection keeps
its tables (``price-state`` keyed "app:cc", ``price-history``) in RocksDB per partition, and Faust
writes every table update to the changelog partition *of the event being processed*, not to a
hash of the table key; reads look in the store of that partition too. A batch holding an app of
another partition would write that key into the wrong changelog partition: after a rebalance the
worker (or standby replica) that owns the key's partition would recover a table without it (a
price change missed, or a first observation taken for a change), and a reader of the right
partition would not find it. Keeping to the producer's own choice for the app-id key also keeps
the records of one app in one partition, in order, whether they come one per app (the shape
before batches, still accepted) or in batches.

The same holds for the ``app-state`` table of the schedule agent, written from ``schedule``
records. Every topic still accepts the shape of one record per app (``RawPrice``,
``Observation``, ``ScheduleCommand``, ``CrawlRequest``, keyed by app id), as published before
batches existed, so records in flight across an upgrade are not lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faust.utils import json as faust_json
from mode.utils.compat import want_bytes

from steamprice.models import Observation, ScheduleCommand

# The partitioner lives with the quick seed command (no Faust there); its users import it here.
from steamprice.seeding import by_partition as by_partition
from steamprice.seeding import partition_for as partition_for

# Most app ids one schedule or crawl-requests record holds (a few kB of JSON): a long list (a
# whole catalog seeded, retry-failed of thousands) goes out in several records.
MAX_RECORD_APPS = 1000


def json_bytes(value: Any) -> bytes:
    """A JSON value's bytes as Faust's ``json`` codec writes them (without the registry's and
    the codec's layers: 0.9 us a value, not 2.3)."""
    return want_bytes(faust_json.dumps(value))


class BadRecord(ValueError):
    """A record of a batch topic that is neither a batch nor a single item; says why."""


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        raise BadRecord(f"not a time: {value!r:.40}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _maybe_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def _maybe_iso(moment: datetime | None) -> str | None:
    return None if moment is None else _iso(moment)


def chunks(items: Sequence[Any], size: int = MAX_RECORD_APPS) -> list[Sequence[Any]]:
    """``items`` in slices of at most ``size`` (one record each)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- prices-raw -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Entries of one ``appdetails`` answer for apps of one partition: ``(app_id, entry JSON)``.

    An entry is the app's part of Steam's answer, as JSON text (``{"success":false}`` for an id
    the answer left out), exactly what ``RawPrice.entry`` held.
    """

    cc: str
    fetched_at: datetime
    entries: Sequence[tuple[int, str]]
    # Apps of the batch priced because someone seeded them (their end dates are asked again).
    reseeded: frozenset[int] = frozenset()


def raw_record(batch: RawBatch) -> dict[str, Any]:
    """The JSON value of a ``prices-raw`` record (``reseeded`` only when there are some)."""
    record: dict[str, Any] = {
        "cc": batch.cc,
        "fetched_at": _iso(batch.fetched_at),
        "entries": [[app_id, entry] for app_id, entry in batch.entries],
    }
    if batch.reseeded:
        record["reseeded"] = sorted(batch.reseeded)
    return record


def read_raw(value: Any) -> RawBatch:
    """A ``prices-raw`` record: a batch, or one ``RawPrice`` (the shape before batches)."""
    if not isinstance(value, Mapping):
        raise BadRecord(f"not a JSON object: {value!r:.80}")
    try:
        if "entries" in value:
            entries = [(int(a), str(e)) for a, e in value["entries"]]
        else:
            entries = [(int(value["app_id"]), str(value["entry"]))]
        reseeded = frozenset(int(a) for a in value.get("reseeded") or ())
        return RawBatch(str(value["cc"]), _time(value["fetched_at"]), entries, reseeded)
    except BadRecord:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRecord(f"not a prices-raw record ({exc!r:.80})") from None


# --- prices-normalized ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObservedBatch:
    """The observations of one raw batch, as change detection found them.

    ``news`` flags the observations the sink must store: those that changed the last known price
    of their (app, region) or were its first, and redeliveries of such (storing is idempotent).
    Every app of the batch was checked at ``checked_at``, news or not (``price_checks``).
    ``check_id`` is stable for the batch, so a redelivered batch records its check once.
    """

    cc: str
    checked_at: datetime
    check_id: str
    observations: Sequence[Observation]
    news: Sequence[bool]
    # Every app of the batch, when ``observations`` holds only the news (as change detection
    # makes it and the sink reads it).
    checked: Sequence[int] | None = None

    @property
    def app_ids(self) -> list[int]:
        if self.checked is not None:
            return list(self.checked)
        return [o.app_id for o in self.observations]

    def stored(self) -> list[Observation]:
        return [o for o, new in zip(self.observations, self.news, strict=True) if new]


def observed_record(batch: ObservedBatch) -> dict[str, Any]:
    """The JSON value of a ``prices-normalized`` record: every app checked (``app_ids``) and the
    observations among them that are news, as objects (kcat-readable).

    Only the news: the sink stores nothing else, and a re-sweep of an unchanged catalog has
    almost none, so its records are a list of ids (the unchanged prices are in ``prices-raw``).
    """
    return {
        "cc": batch.cc,
        "checked_at": _iso(batch.checked_at),
        "check_id": batch.check_id,
        "app_ids": batch.app_ids,
        "observations": [
            {
                "app_id": o.app_id,
                "status": o.status,
                "currency": o.currency,
                "initial": o.initial,
                "final": o.final,
                "discount_percent": o.discount_percent,
                "obs_id": o.obs_id,
            }
            for o, new in zip(batch.observations, batch.news, strict=True)
            if new
        ],
    }


def read_observed(value: Any, news_only: bool = False) -> ObservedBatch:
    """A ``prices-normalized`` record: the news of a batch and every app checked; or, as written
    before, every observation of a batch each flagged ``news``; or one ``Observation`` (before
    batches: stored).

    ``news_only``: build only the observations flagged news (the sink stores nothing else); the
    result's ``checked`` then lists every app of the batch. Records of the current shape hold
    the news only: ``checked`` is always set for them.
    """
    if not isinstance(value, Mapping):
        raise BadRecord(f"not a JSON object: {value!r:.80}")
    try:
        if "observations" not in value:
            obs = _observation(value, str(value["cc"]), _time(value["observed_at"]))
            return ObservedBatch(obs.cc, obs.observed_at, obs.obs_id, [obs], [True])
        cc, at, check_id = str(value["cc"]), _time(value["checked_at"]), str(value["check_id"])
        items = value["observations"]
        if "app_ids" in value:
            stored = [_observation(item, cc, at) for item in items]
            checked = [int(a) for a in value["app_ids"]]
            return ObservedBatch(cc, at, check_id, stored, [True] * len(stored), checked)
        news = [bool(item.get("news", True)) for item in items]
        if news_only:
            return ObservedBatch(
                cc,
                at,
                check_id,
                [_observation(item, cc, at) for item, new in zip(items, news, strict=True) if new],
                [True] * sum(news),
                [item["app_id"] for item in items],
            )
        return ObservedBatch(cc, at, check_id, [_observation(item, cc, at) for item in items], news)
    except BadRecord:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadRecord(f"not a prices-normalized record ({exc!r:.80})") from None


def _observation(item: Mapping[str, Any], cc: str, at: datetime) -> Observation:
    # Values are checked by the sink (storage.observation_problem) before any SQL.
    get = item.get
    return Observation(
        item["app_id"],
        get("cc", cc),
        item["status"],
        get("currency"),
        get("initial"),
        get("final"),
        get("discount_percent"),
        at,
        item["obs_id"],
    )


def app_ids_json(app_ids: Iterable[int]) -> str:
    """The ``price_checks.app_ids`` column: a sorted JSON array."""
    return json.dumps(sorted(app_ids), separators=(",", ":"))


# --- schedule -----------------------------------------------------------------------------------


def schedule_record(commands: Sequence[ScheduleCommand]) -> dict[str, Any]:
    """The JSON value of a ``schedule`` record: commands of one op and time, apps of one partition.

    Columns, so that ``kcat`` shows a short line: ``app_ids``, plus what the op needs per app:
    ``sent_at`` (seed), ``reasons`` (failed), ``change_numbers`` and ``modified_at`` (changed).
    """
    first = commands[0]
    op, at = first.op, first.at
    if any(c.op != op or c.at != at for c in commands):
        raise ValueError("a schedule record holds commands of one op and one time")
    value: dict[str, Any] = {"op": op, "at": _iso(at), "app_ids": [c.app_id for c in commands]}
    if any(c.sent_at is not None for c in commands):
        value["sent_at"] = [_maybe_iso(c.sent_at) for c in commands]
    if any(c.reason for c in commands):
        value["reasons"] = [c.reason for c in commands]
    if any(c.change_number is not None or c.modified_at is not None for c in commands):
        value["change_numbers"] = [c.change_number for c in commands]
        value["modified_at"] = [_maybe_iso(c.modified_at) for c in commands]
    return value


def _column(value: Mapping[str, Any], name: str, n: int, default: Any) -> list[Any]:
    column = value.get(name)
    if column is None:
        return [default] * n
    if not isinstance(column, list) or len(column) != n:
        raise BadRecord(f"{name} does not match app_ids")
    return column


def _app_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRecord(f"not an app id: {value!r:.40}")
    return value


def read_schedule(value: Any) -> list[ScheduleCommand]:
    """A ``schedule`` record: a batch, or one ``ScheduleCommand`` (the shape before batches)."""
    if not isinstance(value, Mapping):
        raise BadRecord(f"not a JSON object: {value!r:.80}")
    try:
        op, at = str(value["op"]), _time(value["at"])
        if "app_ids" not in value:
            return [
                ScheduleCommand(
                    _app_id(value["app_id"]),
                    op,
                    at,
                    str(value.get("reason") or ""),
                    value.get("change_number"),
                    _maybe_time(value.get("modified_at")),
                    _maybe_time(value.get("sent_at")),
                )
            ]
        app_ids = value["app_ids"]
        if not isinstance(app_ids, list):
            raise BadRecord("app_ids is not a list")
        n = len(app_ids)
        sent = _column(value, "sent_at", n, None)
        reasons = _column(value, "reasons", n, "")
        numbers = _column(value, "change_numbers", n, None)
        modified = _column(value, "modified_at", n, None)
        return [
            ScheduleCommand(
                _app_id(app_id),
                op,
                at,
                str(reasons[i] or ""),
                numbers[i],
                _maybe_time(modified[i]),
                _maybe_time(sent[i]),
            )
            for i, app_id in enumerate(app_ids)
        ]
    except BadRecord:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRecord(f"not a schedule record ({exc!r:.80})") from None


# --- crawl-requests -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CrawlBatch:
    """The apps of one ``crawl-requests`` record, and which of them answer a seed."""

    app_ids: Sequence[int]
    # Apps priced because someone seeded them (their end dates are asked again).
    reseeded: frozenset[int] = frozenset()


def crawl_record(
    requested_at: datetime, app_ids: Sequence[int], reseeded: Iterable[int] = ()
) -> dict[str, Any]:
    """The JSON value of a ``crawl-requests`` record: apps of one partition to price now
    (``reseeded``, those of them that answer a seed, only when there are some)."""
    record: dict[str, Any] = {"requested_at": _iso(requested_at), "app_ids": list(app_ids)}
    marked = set(reseeded)
    if marked:
        record["reseeded"] = sorted(marked)
    return record


def read_crawl_batch(value: Any) -> CrawlBatch:
    """A ``crawl-requests`` record, or one ``CrawlRequest`` (before batches; ``seeded`` marks it
    re-seeded). A record without ``reseeded`` (before end dates) has none."""
    if not isinstance(value, Mapping):
        raise BadRecord(f"not a JSON object: {value!r:.80}")
    try:
        if "app_ids" in value:
            if not isinstance(value["app_ids"], list):
                raise BadRecord("app_ids is not a list")
            app_ids = [_app_id(a) for a in value["app_ids"]]
            marked = value.get("reseeded") or []
            if not isinstance(marked, list):
                raise BadRecord("reseeded is not a list")
            return CrawlBatch(app_ids, frozenset(_app_id(a) for a in marked).intersection(app_ids))
        app_id = _app_id(value["app_id"])
        seeded = frozenset([app_id]) if value.get("seeded") is True else frozenset()
        return CrawlBatch([app_id], seeded)
    except KeyError as exc:
        raise BadRecord(f"not a crawl-requests record ({exc!r:.80})") from None


def read_crawl(value: Any) -> list[int]:
    """The app ids of a ``crawl-requests`` record, or of one ``CrawlRequest`` (before batches)."""
    return list(read_crawl_batch(value).app_ids)
