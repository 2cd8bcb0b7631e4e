"""Every table of the pipeline, declared once (RocksDB-backed, changelog-recovered)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import orjson
from faust.stores.rocksdb import Store as RocksDBStore

from steamprice.app import app
from steamprice.models import AppState, PriceHistory

# Schedule and health per app, keyed by app id; written by the schedule agent only (schedule
# topic, keyed by app id).
app_state_table = app.Table(
    "app-state", key_type=int, value_type=AppState, help="Per-app schedule and failures"
)

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


def price_key(app_id: int, cc: str) -> str:
    return f"{app_id}:{cc}"


def partition_reader(table: Any, partition: int) -> Callable[[Any], Any]:
    """``table.get`` for the keys of ``partition``, straight from its RocksDB database.

    Faust's read of a key goes through its dict layers, asks the store twice (``in``, then
    ``[]``) and updates a locked LRU index: about 15 us, a fifth of a re-sweep's CPU, for what
    is one RocksDB lookup. A record's keys all belong to the partition it was read from (see
    ``steamprice.batches``), which is the database Faust itself reads them from (its
    ``Store._get`` with a current event), and writes through the table land there at once, so
    this returns what ``table.get`` returns: JSON values decoded as they are (no
    ``value_type``), Records by the store's own decoder. The stats page still counts the reads.
    Any other store (``memory://``) is read through ``table.get``.
    """
    store = table.data
    if (
        not isinstance(store, RocksDBStore)
        or table.is_global
        or table.use_partitioner
        or table.key_serializer != "json"
        or table.value_serializer != "json"
    ):
        return cast(Callable[[Any], Any], table.get)
    get = store._db_for_partition(partition).get
    counted = table.app.sensors.on_table_get
    dumps = orjson.dumps
    loads = orjson.loads if table.value_type is None else store._decode_value

    def read(key: Any) -> Any:
        counted(table, key)
        value = get(dumps(key))
        return None if value is None else loads(value)

    return read
