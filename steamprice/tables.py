"""Every table of the pipeline, declared once (RocksDB-backed, changelog-recovered)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import current_event
from faust.types.tuples import FutureMessage, PendingMessage
from rocksdict import WriteBatch

from steamprice.app import app
from steamprice.batches import json_bytes
from steamprice.models import AppState, PriceHistory

# Schedule and health per app, keyed by app id; written by the schedule agent only (schedule
# topic, keyed by app id). Values are the JSON of an AppState (``to_data``; no value type: a
# Record would cost five times as much to build, twice per app of a sweep): read them with
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
    ``value_type``), Records by the store's own decoder. Given the :class:`PartitionWriter` of
    the same table and partition (``written``), it also returns what that writer holds for its
    next RocksDB write, as the database will once it is written.

    The stats page and /metrics still count every read, at :meth:`counted` (once per batch):
    in one call to a sensor that takes a count (``on_table_gets``, as ``web.PrometheusMonitor``),
    else once per key as Faust does.
    """

    def __init__(self, table: Any, partition: int, written: Any = None) -> None:
        store = table.data
        self.table = table
        self.reads: list[Any] = []
        self._get = store._db_for_partition(partition).get
        self._encode_key = key_encoder(store)
        self._loads = orjson.loads if table.value_type is None else store._decode_value
        # What a PartitionWriter of this partition holds for its next RocksDB write.
        self._written: dict[Any, Any] = (
            written.pending if isinstance(written, PartitionWriter) else {}
        )

    def __call__(self, key: Any) -> Any:
        self.reads.append(key)
        raw_key = self._encode_key(key)
        value = self._written.get(raw_key) if self._written else None
        if value is None:
            value = self._get(raw_key)
        return None if value is None else self._loads(value)

    def counted(self) -> None:
        """Count the reads since the last call on the table's sensors."""
        reads, self.reads = self.reads, []
        table = self.table
        count_on_sensors(
            table, reads, "on_table_gets", lambda sensor, key: sensor.on_table_get(table, key)
        )


class TableReader:
    """A table read through ``table.get`` (any store other than RocksDB): Faust counts it."""

    def __init__(self, table: Any) -> None:
        self.get = table.get

    def __call__(self, key: Any) -> Any:
        return self.get(key)

    def counted(self) -> None:
        pass


class PartitionWriter:
    """``table[key] = value`` for the keys of one partition, as Faust writes them, in bulk.

    Faust's write of a key sends its changelog message (``Table.on_key_set``: the value
    serialized, a message built through the topic's generic path, a sensor call) and then
    stores it (the value serialized again, a RocksDB write of its own, which appends to
    RocksDB's write-ahead log: a system call per key, about 13 us measured in a worker during
    a first sweep, the largest single cost of a table write). Here the value is serialized once
    and the same bytes go to both places, at :meth:`counted`, once per batch: one RocksDB write
    of every key (a ``WriteBatch``, applied atomically, to the database of the record's
    partition, as ``Store._set`` with that event), then the changelog messages of that
    partition, to the producer buffer, with Faust's own callback, which records the changelog
    offset in RocksDB once the message is sent (``kafka.ProducerBuffer`` sends them as record
    batches). So, as with Faust, a key is in RocksDB before its changelog message can be sent.
    Until then the writes are in :attr:`pending`, which a :class:`PartitionReader` given this
    writer reads first. A record's keys all belong to its partition (``steamprice.batches``),
    the one Faust would pick. Faust's key index (an LRU cache of 1,000 keys' partitions, which
    ``table.get`` outside a stream scans every partition without) is left alone: at a catalog's
    size it holds nothing useful, and writing it cost a tenth of a write.
    """

    def __init__(self, table: Any, partition: int) -> None:
        event = current_event()
        if event is not None:  # Faust's check that the source and changelog topics match
            table._verify_source_topic_partitions(event.message.topic)
        store = table.data
        self.table = table
        self.partition = partition
        self.writes: list[tuple[Any, Any]] = []
        # raw key -> raw value: what the next RocksDB write holds (the last value of a key).
        self.pending: dict[Any, Any] = {}
        self._messages: list[FutureMessage] = []
        self._db = store._db_for_partition(partition)
        self._encode_key = key_encoder(store)
        self._encode_value = json_encoder(
            store.value_serializer, store.value_type, store._encode_value
        )
        self._topic = table.changelog_topic
        self._callback = table._on_changelog_sent
        self._send = table.app.producer.send_soon
        self._app = table.app
        self._key_serializer = table.key_serializer
        self._value_serializer = table.value_serializer

    def __setitem__(self, key: Any, value: Any) -> None:
        raw_key = self._encode_key(key)
        raw_value = self._encode_value(value)
        message = PendingMessage(
            self._topic,
            raw_key,
            raw_value,
            self.partition,
            None,
            {},
            self._key_serializer,
            self._value_serializer,
            self._callback,
            None,
            None,
            self._app.consumer_generation_id,
        )
        self._messages.append(FutureMessage(message))
        self.pending[raw_key] = raw_value
        self.writes.append((key, value))

    def counted(self) -> None:
        """Write the batch (RocksDB, then the changelog) and count it on the table's sensors."""
        if self.pending:
            batch = WriteBatch(raw_mode=True)
            for raw_key, raw_value in self.pending.items():
                batch.put(raw_key, raw_value)
            self._db.write(batch)
            self.pending.clear()  # cleared, not replaced: readers hold this dict
        messages, self._messages = self._messages, []
        for message in messages:
            self._send(message)
        writes, self.writes = self.writes, []
        table = self.table
        count_on_sensors(
            table, writes, "on_table_sets", lambda sensor, kv: sensor.on_table_set(table, *kv)
        )


def json_encoder(
    serializer: Any, record_type: Any, encode: Callable[[Any], bytes | None]
) -> Callable[[Any], bytes | None]:
    """``encode`` (the store's), or what it ends in when the table's serializer is Faust's
    ``json`` codec and its values are plain (no Record type): the same bytes, without the
    registry's and the codec's layers (measured: 2.3 us a value through them, 0.9 direct)."""
    if serializer == "json" and record_type is None:
        return json_bytes
    return encode


def key_encoder(store: Any) -> Callable[[Any], bytes | None]:
    """How a table's keys are encoded, for reads and writes alike (keys are ids and strings)."""
    return json_encoder(store.key_serializer, None, store._encode_key)


class TableWriter:
    """A table written through ``table[key] = value`` (any store other than RocksDB)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __setitem__(self, key: Any, value: Any) -> None:
        self.table[key] = value

    def counted(self) -> None:
        pass


def count_on_sensors(
    table: Any, calls: list[Any], bulk_hook: str, each: Callable[[Any, Any], None]
) -> None:
    """A batch's reads or writes of ``table`` on its sensors: in one call to a sensor that
    takes a count (``bulk_hook``: ``on_table_gets``/``on_table_sets``, as
    ``web.PrometheusMonitor``), else ``each(sensor, call)`` per read or write, as Faust does."""
    if not calls:
        return
    for sensor in table.app.sensors:
        bulk = getattr(sensor, bulk_hook, None)
        if bulk is not None:
            bulk(table, len(calls))
        else:
            for call in calls:
                each(sensor, call)


def _rocksdb_partitions(table: Any) -> bool:
    """Whether the table's keys live in one RocksDB database per partition, JSON in and out."""
    return (
        isinstance(table.data, RocksDBStore)
        and not table.is_global
        and not table.use_partitioner
        and table.key_serializer == "json"
        and table.value_serializer == "json"
    )


def partition_writer(table: Any, partition: int) -> PartitionWriter | TableWriter:
    """A writer of the keys of ``partition`` (:class:`PartitionWriter`), or of the table where
    its store is not RocksDB (``memory://``). Its writes land at ``counted()``: call it once the
    batch is written, before anything else reads the table."""
    return PartitionWriter(table, partition) if _rocksdb_partitions(table) else TableWriter(table)


def partition_reader(
    table: Any, partition: int, written: PartitionWriter | TableWriter | None = None
) -> PartitionReader | TableReader:
    """A reader of the keys of ``partition`` (:class:`PartitionReader`), or of the table where
    its store is not RocksDB (``memory://``). Call ``counted()`` once the batch is read.
    ``written``: the writer of the same table and partition whose writes it must see before
    they are written."""
    if _rocksdb_partitions(table):
        return PartitionReader(table, partition, written)
    return TableReader(table)
