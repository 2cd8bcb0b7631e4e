"""The direct read of a table partition (``tables.partition_reader``) against Faust's own reads.

A real RocksDB store on disk, written through Faust's store API as a stream writes it (the
current event's partition), read back both ways; no broker is needed for a store.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.streams import _current_event

from steamprice.models import AppState
from steamprice.tables import PartitionReader, TableReader, partition_reader


class _Message:
    def __init__(self, partition: int) -> None:
        self.partition = partition


class _Event:  # weakly referenced, as Faust holds the current event
    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


@contextmanager
def processing(partition: int) -> Iterator[None]:
    """As inside a stream: the current event is a record of ``partition``."""
    event = _Event(partition)
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[faust.App]:
    app = faust.App(
        "reader-probe",
        store="rocksdb://",
        datadir=str(tmp_path),
        key_serializer="json",
        value_serializer="json",
    )
    yield app


def test_it_reads_what_faust_reads_from_the_partition_of_the_record(app: faust.App) -> None:
    table = app.Table("state", key_type=str)
    store: Any = table.data
    state = {"app_id": 7, "status": "priced", "final": 999, "recent": [{"obs_id": "ab"}]}
    with processing(3):
        store["7:us"] = state
        store["8:us"] = {"app_id": 8, "status": "no_price"}
        read = partition_reader(table, 3)
        assert isinstance(read, PartitionReader)  # the RocksDB path, not the fallback
        for key in ("7:us", "8:us", "9:us"):
            assert read(key) == store.get(key)
        assert read("7:us") == state
        assert read("9:us") is None
        # A write through the store is seen at once (a batch writes, then reads its next key).
        store["9:us"] = {"app_id": 9}
        assert read("9:us") == {"app_id": 9}
    with processing(5):
        # Another partition's database does not hold these keys.
        assert partition_reader(table, 5)("7:us") is None


class _Sensor:
    """A sensor that takes a count (as ``web.PrometheusMonitor``)."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def on_table_gets(self, table: Any, count: int) -> None:
        self.counts.append(count)


def test_the_reads_of_a_batch_are_counted_on_the_stats_page_once_read(app: faust.App) -> None:
    table = app.Table("state", key_type=str)
    app.sensors.add(app.monitor)  # as a starting worker does: Faust's, one call per key
    bulk = _Sensor()
    app.sensors.add(bulk)  # type: ignore[arg-type]
    before = app.monitor._table_or_create(table).keys_retrieved
    with processing(0):
        read = partition_reader(table, 0)
        read("1:us")
        read("2:us")
        read("1:us")
        read.counted()
        read.counted()  # nothing read since: nothing more counted
        read("3:us")
        read.counted()
    assert app.monitor._table_or_create(table).keys_retrieved == before + 4
    assert bulk.counts == [3, 1]


def test_records_are_decoded_as_faust_decodes_them(app: faust.App) -> None:
    typed = app.Table("typed", key_type=int, value_type=AppState)
    store: Any = typed.data
    at = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)
    state = AppState(app_id=730, tracked_since=at, next_due=at, failures=2, pending=True)
    with processing(1):
        store[730] = state
        read = partition_reader(typed, 1)
        assert isinstance(read, PartitionReader)
        assert read(730) == store.get(730) == state and isinstance(read(730), AppState)
        assert read(731) is None


def test_stores_it_cannot_read_like_faust_are_read_through_the_table(tmp_path: Path) -> None:
    memory = faust.App("reader-memory", store="memory://", datadir=str(tmp_path / "m"))
    in_memory = memory.Table("state", key_type=str)
    read = partition_reader(in_memory, 0)
    assert isinstance(read, TableReader) and read.get == in_memory.get
