"""Batch records: the partition of an app id is the producer's own choice; records round-trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import DefaultPartitioner
from faust.serializers import codecs
from hypothesis import given
from hypothesis import strategies as st

from steamprice.batches import (
    MAX_RECORD_APPS,
    BadRecord,
    CrawlBatch,
    ObservedBatch,
    RawBatch,
    by_partition,
    chunks,
    crawl_record,
    observed_record,
    partition_for,
    raw_record,
    read_crawl,
    read_crawl_batch,
    read_observed,
    read_raw,
    read_schedule,
    schedule_record,
)
from steamprice.models import Observation, ScheduleCommand
from steamprice.storage import price_check_rows

T = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)


@given(st.integers(1, 2**31 - 1), st.integers(1, 64))
def test_the_partition_is_the_default_partitioners_for_the_app_id_key(
    app_id: int, partitions: int
) -> None:
    # The key as the app's topics serialize it (key_serializer="json"), hashed as the producer
    # hashes it when no partition is given.
    key = codecs.dumps("json", app_id)
    assert key == str(app_id).encode()
    every = list(range(partitions))
    assert partition_for(app_id, partitions) == DefaultPartitioner()(key, every, every)


def test_known_partitions_of_the_java_client() -> None:
    # murmur2 of the key bytes, as org.apache.kafka.common.utils.Utils computes it.
    assert [partition_for(a, 8) for a in (730, 570, 440, 10)] == [
        DefaultPartitioner()(str(a).encode(), list(range(8)), []) for a in (730, 570, 440, 10)
    ]


def test_by_partition_groups_and_keeps_order() -> None:
    groups = by_partition(range(100, 200), 4)
    assert sorted(a for g in groups.values() for a in g) == list(range(100, 200))
    for partition, ids in groups.items():
        assert ids == sorted(ids) and {partition_for(a, 4) for a in ids} == {partition}


def _through_json(value: object) -> object:
    return json.loads(json.dumps(value))


def test_raw_batches_round_trip_and_the_old_shape_is_read() -> None:
    batch = RawBatch("us", T, [(730, '{"success":false}'), (570, '{"success":true,"data":[]}')])
    assert read_raw(_through_json(raw_record(batch))) == batch
    single = {"app_id": 730, "cc": "us", "fetched_at": T.isoformat(), "entry": "{}"}
    assert read_raw(single) == RawBatch("us", T, [(730, "{}")])


def test_observed_batches_carry_the_news_and_every_app_and_the_old_shapes_are_read() -> None:
    obs = [
        Observation(730, "us", "priced", "USD", 1999, 999, 50, T, "o1"),
        Observation(570, "us", "no_price", None, None, None, None, T, "o2"),
    ]
    batch = ObservedBatch("us", T, "o1", obs, [True, False])
    record = _through_json(observed_record(batch))
    assert record["app_ids"] == [730, 570]
    assert [o["app_id"] for o in record["observations"]] == [730]  # 570 is no news
    back = read_observed(record)
    assert back == ObservedBatch("us", T, "o1", obs[:1], [True], [730, 570])
    assert back.stored() == batch.stored() == obs[:1] and back.app_ids == [730, 570]
    # Written before (every observation, each flagged): read as it was.
    flagged = {k: v for k, v in record.items() if k != "app_ids"}
    flagged["observations"] = [
        {**record["observations"][0], "news": True},
        {"app_id": 570, "status": "no_price", "obs_id": "o2", "news": False},
    ]
    assert read_observed(flagged) == batch
    assert read_observed(flagged, news_only=True) == back
    single = {
        "app_id": 730,
        "cc": "us",
        "status": "priced",
        "currency": "USD",
        "initial": 1999,
        "final": 999,
        "discount_percent": 50,
        "observed_at": T.isoformat(),
        "obs_id": "o1",
    }
    assert read_observed(single) == ObservedBatch("us", T, "o1", obs[:1], [True])


def test_the_sink_reads_only_the_news_and_still_checks_every_app() -> None:
    obs = [
        Observation(730, "us", "priced", "USD", 1999, 999, 50, T, "o1"),
        Observation(570, "us", "no_price", None, None, None, None, T, "o2"),
        Observation(440, "us", "priced", "USD", 999, 999, 0, T, "o3"),
    ]
    full = ObservedBatch("us", T, "o1", obs, [False, True, False])
    sunk = read_observed(_through_json(observed_record(full)), news_only=True)
    assert sunk.observations == [obs[1]] and sunk.stored() == full.stored()
    assert sunk.app_ids == full.app_ids == [730, 570, 440]
    assert price_check_rows([sunk]) == price_check_rows([full])
    quiet = ObservedBatch("us", T, "o4", obs, [False] * 3)
    nothing_new = read_observed(_through_json(observed_record(quiet)), news_only=True)
    assert nothing_new.observations == [] and nothing_new.app_ids == [730, 570, 440]
    assert price_check_rows([nothing_new])[0][3:] == (3, "[440,570,730]")


@pytest.mark.parametrize(
    "value",
    [None, "730", [1, 2], {"cc": "us"}, {"cc": "us", "fetched_at": "yesterday", "entries": []}],
)
def test_anything_else_is_a_bad_record(value: object) -> None:
    with pytest.raises(BadRecord):
        read_raw(value)
    with pytest.raises(BadRecord):
        read_observed(value)


def test_schedule_records_round_trip_per_op() -> None:
    later = datetime(2025, 8, 17, 13, 0, tzinfo=UTC)
    batches = [
        [ScheduleCommand(730, "seed", T, sent_at=later), ScheduleCommand(570, "seed", T)],
        [ScheduleCommand(730, "priced", T), ScheduleCommand(570, "priced", T)],
        [ScheduleCommand(730, "failed", T, "us: timeout"), ScheduleCommand(570, "failed", T, "x")],
        [ScheduleCommand(730, "changed", T, change_number=7, modified_at=later)],
        [ScheduleCommand(730, "retry", T)],
    ]
    for commands in batches:
        value = _through_json(schedule_record(commands))
        assert read_schedule(value) == commands
    # What kcat shows for the common case: one short line.
    assert schedule_record(batches[1]) == {
        "op": "priced",
        "at": T.isoformat(),
        "app_ids": [730, 570],
    }


def test_a_schedule_record_holds_one_op_and_one_time() -> None:
    with pytest.raises(ValueError, match="one op"):
        schedule_record([ScheduleCommand(1, "seed", T), ScheduleCommand(2, "retry", T)])
    with pytest.raises(ValueError, match="one op"):
        schedule_record(
            [ScheduleCommand(1, "seed", T), ScheduleCommand(2, "seed", T.replace(hour=1))]
        )


def test_the_schedule_command_before_batches_is_read() -> None:
    # faust.Record JSON of ScheduleCommand (include_metadata=False), keyed by app id.
    single = {
        "app_id": 730,
        "op": "changed",
        "at": T.isoformat(),
        "reason": "",
        "change_number": 12,
        "modified_at": T.isoformat(),
        "sent_at": None,
    }
    assert read_schedule(single) == [ScheduleCommand(730, "changed", T, "", 12, T, None)]


def test_crawl_records_round_trip_and_the_old_shape_is_read() -> None:
    assert read_crawl(_through_json(crawl_record(T, [730, 570]))) == [730, 570]
    assert read_crawl({"app_id": 730, "requested_at": T.isoformat()}) == [730]


def test_crawl_records_carry_the_reseeded_apps_and_records_without_have_none() -> None:
    record = _through_json(crawl_record(T, [730, 570, 440], reseeded=[570]))
    assert read_crawl_batch(record) == CrawlBatch([730, 570, 440], frozenset({570}))
    plain = crawl_record(T, [730, 570])
    assert "reseeded" not in plain  # only when there are some: kcat shows a short line
    assert read_crawl_batch(_through_json(plain)) == CrawlBatch([730, 570])
    # An id the record does not price is no re-seed of it.
    stray = {"requested_at": T.isoformat(), "app_ids": [730], "reseeded": [730, 999]}
    assert read_crawl_batch(stray).reseeded == frozenset({730})
    # The one-app shape before batches: its ``seeded`` flag.
    old = {"app_id": 730, "requested_at": T.isoformat()}
    assert read_crawl_batch({**old, "seeded": True}) == CrawlBatch([730], frozenset({730}))
    assert read_crawl_batch(old) == CrawlBatch([730])


@pytest.mark.parametrize(
    "value",
    [
        None,
        [1],
        {"op": "seed"},
        {"op": "seed", "at": T.isoformat(), "app_ids": "730"},
        {"op": "seed", "at": T.isoformat(), "app_ids": ["730"]},
        {"op": "seed", "at": T.isoformat(), "app_ids": [1, 2], "sent_at": [None]},
        {"op": "seed", "at": "soon", "app_ids": [1]},
    ],
)
def test_a_bad_schedule_record_is_refused(value: object) -> None:
    with pytest.raises(BadRecord):
        read_schedule(value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        {},
        {"app_ids": 5},
        {"app_ids": [True]},
        {"app_id": "1"},
        {"app_ids": [1], "reseeded": 1},
        {"app_ids": [1], "reseeded": ["1"]},
    ],
)
def test_a_bad_crawl_record_is_refused(value: object) -> None:
    with pytest.raises(BadRecord):
        read_crawl(value)


def test_long_lists_go_out_in_several_records() -> None:
    ids = list(range(2 * MAX_RECORD_APPS + 1))
    assert [len(c) for c in chunks(ids)] == [MAX_RECORD_APPS, MAX_RECORD_APPS, 1]
    assert [a for c in chunks(ids) for a in c] == ids
