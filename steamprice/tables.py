"""Every table of the pipeline, declared once (RocksDB-backed, changelog-recovered)."""

from __future__ import annotations

from typing import Any

import orjson
from faust.stores.rocksdb import Store as RocksDBStore

from steamprice.app import app
from steamprice.models import AppState, PriceHistory

# Schedule and health per app, keyed by app id; written by the schedule agent only (schedule
# topic, keyed by app id). Values are the JSON of an AppState (``to_data``; no value type: a
# Record would cost ten times as much to build, twice per app of a sweep): read them with
# :func:`app_state`.
app_state_table = app.Table("app-state", key_type=int, help="Per-app schedule and failures")

# Last price per (app, region), keyed "app_id:cc"; written by the change agent only, from
# prices-raw batches that hold the apps of one partition each, so every key is written in its
# app's partition. Written only when the price changes: a sweep of an unchanged catalog writes
# nothing. Values are the JSON of a PriceState, read as it is (no value type): most reads only
# confirm an unchanged price (pricing.settled), and decoding the Record costs five times more.
price_state_table = app.Table("price-state", key_type=str, help="Last price per app and region")

# Price history per (app, region), same key and writer: historical low, the periods of the last
# 90 days and the last few changes. Read only when a price changes.
price_history_table = app.Table(
    "price-history", key_type=str, value_type=PriceHistory, help="Lows and recent changes"
)


def app_state(value: Any) -> AppState | None:
    """An ``app-state`` value as the table or a reader returns it (None: not tracked)."""
    return None if value is None else AppState.from_data(value)


def price_key(app_id: int, cc: str) -> str:
    return f"{app_id}:{cc}"


class PartitionReader:
    """``table.get`` for the keys of one partition, straight from its RocksDB database.

    Faust's read of a key goes through its dict layers, asks the store twice (``in``, then
    ``[]``) and updates a locked LRU index: about 15 us, a fifth of a re-sweep's CPU, for what
    is one RocksDB lookup. A record's keys all belong to the partition it was read from (see
    ``steamprice.batches``), which is the database Faust itself reads them from (its
    ``Store._get`` with a current event), and writes through the table land there at once, so
    this returns what ``table.get`` returns: JSON values decoded as they are (no
    ``value_type``), Records by the store's own decoder.

    The stats page and /metrics still count every read, at :meth:`counted` (once per batch):
    in one call to a sensor that takes a count (``on_table_gets``, as ``web.PrometheusMonitor``),
    else once per key as Faust does.
    """

    def __init__(self, table: Any, partition: int) -> None:
        store = table.data
        self.table = table
        self.reads: list[Any] = []
        self._get = store._db_for_partition(partition).get
        self._loads = orjson.loads if table.value_type is None else store._decode_value

    def __call__(self, key: Any) -> Any:
        self.reads.append(key)
        value = self._get(orjson.dumps(key))
        return None if value is None else self._loads(value)

    def counted(self) -> None:
        """Count the reads since the last call on the table's sensors."""
        reads, self.reads = self.reads, []
        if not reads:
            return
        table = self.table
        for sensor in table.app.sensors:
            bulk = getattr(sensor, "on_table_gets", None)
            if bulk is not None:
                bulk(table, len(reads))
            else:
                for key in reads:
                    sensor.on_table_get(table, key)


class TableReader:
    """A table read through ``table.get`` (any store other than RocksDB): Faust counts it."""

    def __init__(self, table: Any) -> None:
        self.get = table.get

    def __call__(self, key: Any) -> Any:
        return self.get(key)

    def counted(self) -> None:
        pass


def partition_reader(table: Any, partition: int) -> PartitionReader | TableReader:
    """A reader of the keys of ``partition`` (:class:`PartitionReader`), or of the table where
    its store is not RocksDB (``memory://``). Call ``counted()`` once the batch is read."""
    store = table.data
    if (
        not isinstance(store, RocksDBStore)
        or table.is_global
        or table.use_partitioner
        or table.key_serializer != "json"
        or table.value_serializer != "json"
    ):
        return TableReader(table)
    return PartitionReader(table, partition)
