"""The change agent: one prices-raw batch in, its tables, prices-normalized and price-changes out.

A batch holds the apps of one partition (the crawler's promise), so every table write must go
to the changelog partition of the record, the normalized batch to the same partition, and each
change event to price-changes keyed by its app id. Between deliveries the price-state values are
turned into the JSON that RocksDB hands back in production, so the agent's fast path for
unchanged prices (``pricing.settled``) is the one exercised.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from steamprice.agents import changes
from steamprice.agents.changes import detect_changes
from steamprice.app import app
from steamprice.batches import RawBatch, partition_for, raw_record, read_observed
from steamprice.metrics import Metrics
from steamprice.models import PriceChange, PriceState
from steamprice.tables import price_history_table, price_key, price_state_table
from steamprice.topics import price_changes_topic, prices_normalized_topic
from tests.support.agents import Sent, processed, turns

T0 = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)
PARTITIONS = app.conf.topic_partitions
PARTITION = 3
APPS = [a for a in range(1, 500) if partition_for(a, PARTITIONS) == PARTITION][:3]


def priced(final: int, initial: int = 1999) -> str:
    discount = round(100 - final * 100 / initial) if final < initial else 0
    overview = {"currency": "USD", "initial": initial, "final": final, "discount_percent": discount}
    return json.dumps({"success": True, "data": {"price_overview": overview}})


def raw(at: datetime, finals: dict[int, int]) -> dict[str, Any]:
    return raw_record(RawBatch("us", at, [(a, priced(f)) for a, f in finals.items()]))


def stored_as_json() -> None:
    """What RocksDB returns: the JSON of each value, not the Record that was assigned."""
    for key, value in list(price_state_table.data.items()):
        if isinstance(value, PriceState):
            price_state_table.data[key] = json.loads(value.dumps())


class Driver:
    def __init__(self, agent: Any, sent: Sent) -> None:
        self.agent = agent
        self.sent = sent

    async def __call__(self, value: Any, partition: int = PARTITION) -> None:
        stored_as_json()
        mark = len(self.sent.records)
        event = await self.agent.put(value, partition=partition)
        await processed(event)
        self.new = self.sent.records[mark:]

    def normalized(self) -> list[tuple[int, bool]]:
        name = prices_normalized_topic.get_topic_name()
        out = []
        for record in self.new:
            if record.topic == name:
                assert record.partition == PARTITION, "the batch must stay in its partition"
                batch = read_observed(json.loads(json.dumps(record.value)))
                stored = {o.app_id for o in batch.stored()}
                out.extend((app_id, app_id in stored) for app_id in batch.app_ids)
        return out

    def events(self) -> list[PriceChange]:
        name = price_changes_topic.get_topic_name()
        out = []
        for record in self.new:
            if record.topic == name:
                assert isinstance(record.value, PriceChange) and record.key == record.value.app_id
                out.append(record.value)
        return out

    def table_writes(self) -> list[tuple[str, int | None]]:
        names = {
            t.changelog_topic.get_topic_name() for t in (price_state_table, price_history_table)
        }
        return [(r.key, r.partition) for r in self.new if r.topic in names]


@pytest.fixture
async def drive(sent: Sent) -> Any:
    async with detect_changes.test_context() as agent:
        yield Driver(agent, sent)


async def test_a_first_sweep_stores_every_key_in_the_batch_partition(drive: Driver) -> None:
    await drive(raw(T0, dict.fromkeys(APPS, 1999)))
    assert drive.normalized() == [(a, True) for a in APPS]  # first observations: all stored
    assert drive.events() == []  # a first observation is not a change
    writes = drive.table_writes()
    assert {k for k, _ in writes} == {price_key(a, "us") for a in APPS}
    assert {p for _, p in writes} == {PARTITION}


async def test_a_resweep_writes_only_the_change(drive: Driver, metrics: Metrics) -> None:
    a, b, c = APPS
    await drive(raw(T0, dict.fromkeys(APPS, 1999)))
    await drive(raw(T0 + timedelta(hours=6), {a: 1999, b: 999, c: 1999}))
    assert drive.normalized() == [(a, False), (b, True), (c, False)]
    [event] = drive.events()
    assert (event.app_id, event.kind, event.old_final, event.new_final) == (
        b,
        "discount_started",
        1999,
        999,
    )
    assert {k for k, _ in drive.table_writes()} == {price_key(b, "us")}
    assert metrics.price_changes.labels("discount_started")._value.get() == 1
    assert metrics.games_processed.labels("normalize", "priced")._value.get() == 6


async def test_a_redelivered_batch_re_emits_the_same_events(drive: Driver) -> None:
    a, b, c = APPS
    await drive(raw(T0, dict.fromkeys(APPS, 1999)))
    second = raw(T0 + timedelta(hours=6), {a: 1999, b: 999, c: 1999})
    await drive(second)
    first_events = drive.events()
    await drive(second)  # a crash before the ack: Kafka delivers the record again
    assert [e.event_id for e in drive.events()] == [e.event_id for e in first_events]
    assert drive.normalized() == [(a, False), (b, True), (c, False)]  # stored again: idempotent
    # The crash may have lost b's table writes on their way to the changelog (they reached the
    # local database only): they are written again, to the same partition. a and c wrote none.
    assert sorted(drive.table_writes()) == [(price_key(b, "us"), PARTITION)] * 2
    assert price_state_table[price_key(b, "us")]["final"] == 999


async def test_the_shape_before_batches_is_still_read(drive: Driver) -> None:
    """One ``RawPrice`` per app, keyed by app id, as records in flight across an upgrade are."""
    app_id = APPS[0]
    single = {"app_id": app_id, "cc": "us", "fetched_at": T0.isoformat(), "entry": priced(499)}
    await drive(single)
    assert drive.normalized() == [(app_id, True)]
    assert price_state_table.get(price_key(app_id, "us")) is not None


async def test_garbage_is_counted_and_skipped(drive: Driver, metrics: Metrics) -> None:
    await drive({"cc": "us"})
    await drive("not a batch")
    assert drive.new == []
    assert metrics.bad_input.labels("prices-raw", "invalid")._value.get() == 2
    await drive(raw(T0, {APPS[0]: 1999}))  # and the agent goes on
    assert drive.normalized() == [(APPS[0], True)]


async def test_an_odd_entry_is_stored_as_unknown(drive: Driver, metrics: Metrics) -> None:
    odd = raw_record(RawBatch("us", T0, [(APPS[0], '{"success":true,"data":"oops"}')]))
    await drive(odd)
    assert drive.normalized() == [(APPS[0], True)]
    assert metrics.bad_input.labels("steam", "malformed_entry")._value.get() == 1
    assert metrics.games_processed.labels("normalize", "unknown")._value.get() == 1


class Clock:
    """The change agent's clock, moved by hand: ``step`` seconds pass at each reading."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def test_other_tasks_run_while_a_batch_is_applied(
    drive: Driver, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of 100 holds the event loop for ~15 ms on a first sweep: the MySQL sink, which
    needs a turn for each step of a transaction, must get turns during it, not only after."""
    apps = [a for a in range(1, 5000) if partition_for(a, PARTITIONS) == PARTITION][:100]
    state_log = price_state_table.changelog_topic.get_topic_name()
    monkeypatch.setattr(changes, "monotonic", Clock(step=0.001))  # a slow batch
    # Table writes done, at each turn another task got.
    async with turns(lambda: sum(1 for r in sent.records if r.topic == state_log)) as seen:
        await drive(raw(T0, dict.fromkeys(apps, 1999)))
    assert len(drive.table_writes()) == 100
    assert any(0 < writes < 100 for writes in seen), "no turn for anyone mid-batch"


async def test_a_quick_batch_keeps_the_loop_until_it_is_applied(
    drive: Driver, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-sweep's batch takes ~2 ms: a turn of the event loop every few entries (a poll of
    every socket each) cost more than the entries; turns come every YIELD_SECONDS instead."""
    apps = [a for a in range(1, 5000) if partition_for(a, PARTITIONS) == PARTITION][:100]
    state_log = price_state_table.changelog_topic.get_topic_name()
    monkeypatch.setattr(changes, "monotonic", Clock(step=changes.YIELD_SECONDS / 100))
    async with turns(lambda: sum(1 for r in sent.records if r.topic == state_log)) as seen:
        await drive(raw(T0, dict.fromkeys(apps, 1999)))
    assert len(drive.table_writes()) == 100
    assert not any(0 < writes < 100 for writes in seen), "turns mid-batch before their time"
