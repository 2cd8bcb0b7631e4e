"""The batch records of ``prices-raw`` and ``prices-normalized``, and where they go (pure).

One record carries the apps of one Steam answer (one request, one region) that belong to one
partition of the pipeline's topics, and is sent to that partition explicitly. So per-record
costs (Faust's stream, sensors, acks, a produce) are paid once per batch, not once per app.

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

Both topics still accept the shape of one record per app (``RawPrice``, ``Observation``), as
published before batches existed, so records in flight across an upgrade are not lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka.partitioner import murmur2

from steamprice.models import Observation


def partition_for(app_id: int, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a record keyed by ``app_id``.

    Topics are keyed by the app id serialized as JSON (``730`` -> ``b"730"``); the Java client,
    aiokafka and Faust all take murmur2 of the key bytes, made positive, modulo the count.
    """
    hashed: int = murmur2(str(app_id).encode())
    return (hashed & 0x7FFFFFFF) % partitions


def by_partition(app_ids: Iterable[int], partitions: int) -> dict[int, list[int]]:
    """App ids grouped by their partition (order kept within a group)."""
    groups: dict[int, list[int]] = {}
    for app_id in app_ids:
        groups.setdefault(partition_for(app_id, partitions), []).append(app_id)
    return groups


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

    @property
    def app_ids(self) -> list[int]:
        return [o.app_id for o in self.observations]

    def stored(self) -> list[Observation]:
        return [o for o, new in zip(self.observations, self.news, strict=True) if new]


def observed_record(batch: ObservedBatch) -> dict[str, Any]:
    """The JSON value of a ``prices-normalized`` record (observations as objects, kcat-readable)."""
    return {
        "cc": batch.cc,
        "checked_at": _iso(batch.checked_at),
        "check_id": batch.check_id,
        "observations": [
            {
                "app_id": o.app_id,
                "status": o.status,
                "currency": o.currency,
                "initial": o.initial,
                "final": o.final,
                "discount_percent": o.discount_percent,
                "obs_id": o.obs_id,
                "news": new,
            }
            for o, new in zip(batch.observations, batch.news, strict=True)
        ],
    }


def read_observed(value: Any) -> ObservedBatch:
    """A ``prices-normalized`` record: a batch, or one ``Observation`` (before batches: stored)."""
    if not isinstance(value, Mapping):
        raise BadRecord(f"not a JSON object: {value!r:.80}")
    try:
        if "observations" not in value:
            obs = _observation(value, str(value["cc"]), _time(value["observed_at"]))
            return ObservedBatch(obs.cc, obs.observed_at, obs.obs_id, [obs], [True])
        cc, at = str(value["cc"]), _time(value["checked_at"])
        items = value["observations"]
        return ObservedBatch(
            cc,
            at,
            str(value["check_id"]),
            [_observation(item, cc, at) for item in items],
            [bool(item.get("news", True)) for item in items],
        )
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
