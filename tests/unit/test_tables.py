"""The direct reads and writes of a table partition (``tables.partition_reader`` and
``partition_writer``) against Faust's own.

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
from faust.tables.base import Collection

from steamprice.models import AppState, PriceHistory
from steamprice.tables import (
    PartitionReader,
    PartitionWriter,
    TableReader,
    TableWriter,
    app_state,
    partition_reader,
    partition_writer,
)


class _Message:
    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.topic = "source"


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
    typed = app.Table("typed", key_type=int, value_type=PriceHistory)
    store: Any = typed.data
    at = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)
    history = PriceHistory(app_id=730, cc="us", currency="USD", low_final=999, low_at=at)
    with processing(1):
        store[730] = history
        read = partition_reader(typed, 1)
        assert isinstance(read, PartitionReader)
        assert read(730) == store.get(730) == history and isinstance(read(730), PriceHistory)
        assert read(731) is None


# An app-state value as the AppState Record of earlier releases wrote it (Faust's JSON).
RECORD_ERA_STATE = (
    b'{"app_id":730,"tracked_since":"2026-11-30T19:23:42.456670Z",'
    b'"next_due":"2026-11-30T19:23:42.456670Z","last_requested":"2026-11-30T19:23:42.456670Z",'
    b'"failures":0,"failed":false,"last_error":"","pending":true,'
    b'"last_priced":"2026-11-30T19:23:42.456670Z","last_result":"ok","change_number":null,'
    b'"priority":false,"recheck_at":null}'
)


def test_app_states_are_written_and_read_as_the_record_of_earlier_releases(app: faust.App) -> None:
    table = app.Table("states", key_type=int)
    store: Any = table.data
    at = datetime(2026, 11, 30, 19, 23, 42, 456670, tzinfo=UTC)
    state = AppState(
        app_id=730,
        tracked_since=at,
        next_due=at,
        last_requested=at,
        pending=True,
        last_priced=at,
        last_result="ok",
    )
    assert state.dumps() == RECORD_ERA_STATE  # byte for byte: old and new workers agree
    with processing(1):
        store[730] = state.to_data()
        assert store._db_for_partition(1).get(b"730") == RECORD_ERA_STATE
        read = partition_reader(table, 1)
        assert app_state(read(730)) == state == app_state(store.get(730))
        assert app_state(read(731)) is None
    # Older values may lack newer fields, and carry naive times (UTC).
    old = AppState.from_data({"app_id": 5, "tracked_since": "2025-08-17T12:00:00", "next_due": at})
    assert old == AppState(
        app_id=5, tracked_since=datetime(2025, 8, 17, 12, tzinfo=UTC), next_due=at
    )
    copy = state.copy()
    copy.pending = False
    assert copy != state and state.pending


def test_stores_it_cannot_read_like_faust_are_read_through_the_table(tmp_path: Path) -> None:
    memory = faust.App("reader-memory", store="memory://", datadir=str(tmp_path / "m"))
    in_memory = memory.Table("state", key_type=str)
    read = partition_reader(in_memory, 0)
    assert isinstance(read, TableReader) and read.get == in_memory.get


class _Buffer:
    """The producer buffer, as a table write reaches it (``send_soon``)."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def put(self, fut: Any) -> None:
        self.sent.append(fut)


def _written(buffer: _Buffer) -> list[tuple[Any, ...]]:
    out = []
    for fut in buffer.sent:
        m = fut.message
        callback = (m.callback.__self__, m.callback.__func__)
        out.append((m.channel, m.key, m.value, m.partition, m.headers or {}, callback, m.timestamp))
    return out


class _Sets:
    def __init__(self) -> None:
        self.counts: list[int] = []

    def on_table_sets(self, table: Any, count: int) -> None:
        self.counts.append(count)


async def test_it_writes_what_faust_writes_where_faust_writes_it(app: faust.App) -> None:
    """The same bytes in the same RocksDB database, the same changelog messages (topic,
    partition, key, value, the callback that records their offsets), the same counts; only
    Faust's key index (a cache) is left alone."""
    history = PriceHistory(
        app_id=7, cc="us", currency="USD", low_final=999, low_at=datetime(2025, 8, 17, tzinfo=UTC)
    )
    at = datetime(2025, 8, 17, 12, tzinfo=UTC)  # Faust's JSON writes it its own way
    writes = [("7:us", {"app_id": 7, "final": 999}), ("8:us", None), ("7:us", {"at": at})]
    results = []
    for name, how in (("faust", "table"), ("writer", "writer")):
        buffer = _Buffer()
        app.producer.buffer = buffer  # type: ignore[attr-defined]
        states = app.Table(f"{name}-state", key_type=str)
        histories = app.Table(f"{name}-history", key_type=str, value_type=PriceHistory)
        app.sensors.add(app.monitor)
        with processing(3):
            if how == "table":
                for key, value in writes:
                    states[key] = value
                histories["7:us"] = history
            else:
                write, write_history = partition_writer(states, 3), partition_writer(histories, 3)
                assert isinstance(write, PartitionWriter)
                for key, value in writes:
                    write[key] = value
                write_history["7:us"] = history
                write.counted()
                write_history.counted()
            assert partition_reader(histories, 3)("7:us") == history == histories.get("7:us")
        store: Any = states.data
        database = dict(store._db_for_partition(3).items())
        index = {k: store._key_index.get(k) for k in (b'"7:us"', b'"8:us"')}
        # Found outside a stream (no current event) either way: through Faust's key index, or,
        # as the writer leaves it alone, by the scan of the partitions Faust falls back to.
        assert states.get("7:us") == {"at": "2025-08-17T12:00:00Z"}
        sent = [
            (states if m[0] is states.changelog_topic else histories, *m[1:])
            for m in _written(buffer)
        ]
        sent = [(t.name.split("-")[1], *rest) for t, *rest in sent]
        counts = [app.monitor._table_or_create(t).keys_updated for t in (states, histories)]
        results.append((database, index, sent, counts))
    faust_result, writer_result = results
    assert writer_result[0] == faust_result[0]
    assert faust_result[0] == {b'"7:us"': b'{"at":"2025-08-17T12:00:00Z"}', b'"8:us"': b"null"}
    assert faust_result[1] == {b'"7:us"': 3, b'"8:us"': 3}
    assert writer_result[1] == {b'"7:us"': None, b'"8:us"': None}
    assert [(*m[:5], m[6]) for m in writer_result[2]] == [(*m[:5], m[6]) for m in faust_result[2]]
    for message in writer_result[2]:  # each table's own callback: the offset reaches RocksDB
        assert message[5][1] is Collection._on_changelog_sent
    assert writer_result[3] == faust_result[3] == [3, 1]


async def test_the_writes_of_a_batch_are_counted_once_written(app: faust.App) -> None:
    table = app.Table("state", key_type=str)
    bulk = _Sets()
    app.sensors.add(bulk)  # type: ignore[arg-type]
    with processing(0):
        write = partition_writer(table, 0)
        write["1:us"] = {"a": 1}
        write["2:us"] = {"a": 2}
        assert bulk.counts == []
        write.counted()
        write.counted()  # nothing written since: nothing more counted
    assert bulk.counts == [2]


def test_stores_it_cannot_write_like_faust_are_written_through_the_table(tmp_path: Path) -> None:
    memory = faust.App("writer-memory", store="memory://", datadir=str(tmp_path / "m"))
    in_memory = memory.Table("state", key_type=str)
    write = partition_writer(in_memory, 0)
    assert isinstance(write, TableWriter) and write.table is in_memory


async def test_a_batch_lands_at_once_when_counted_and_its_reader_sees_it_before(
    app: faust.App,
) -> None:
    """Nothing reaches RocksDB or the producer before ``counted()``; a reader given the writer
    reads the batch's own writes meanwhile (the last of a key), one without it the database."""
    buffer = _Buffer()
    app.producer.buffer = buffer  # type: ignore[attr-defined]
    table = app.Table("state", key_type=str)
    histories = app.Table("history", key_type=str, value_type=PriceHistory)
    history = PriceHistory(
        app_id=7, cc="us", currency="USD", low_final=999, low_at=datetime(2025, 8, 17, tzinfo=UTC)
    )
    with processing(2):
        write, write_history = partition_writer(table, 2), partition_writer(histories, 2)
        write["1:us"] = {"a": 0}
        write.counted()
        write["1:us"] = {"a": 1}
        write["1:us"] = {"a": 2}
        write["2:us"] = {"a": 3}
        write_history["7:us"] = history
        reader = partition_reader(table, 2, write)
        plain = partition_reader(table, 2)
        assert reader("1:us") == {"a": 2} and reader("2:us") == {"a": 3}
        assert plain("1:us") == {"a": 0} and plain("2:us") is None
        assert partition_reader(histories, 2, write_history)("7:us") == history
        assert partition_reader(histories, 2)("7:us") is None
        assert len(_written(buffer)) == 1
        write.counted()
        write_history.counted()
        assert plain("1:us") == {"a": 2} and plain("2:us") == {"a": 3}
        assert partition_reader(histories, 2)("7:us") == history
        assert reader("1:us") == {"a": 2}  # the same, read from the database now
    assert len(_written(buffer)) == 5
