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
    BadRecord,
    ObservedBatch,
    RawBatch,
    by_partition,
    observed_record,
    partition_for,
    raw_record,
    read_observed,
    read_raw,
)
from steamprice.models import Observation

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


def test_observed_batches_round_trip_and_the_old_shape_is_stored() -> None:
    obs = [
        Observation(730, "us", "priced", "USD", 1999, 999, 50, T, "o1"),
        Observation(570, "us", "no_price", None, None, None, None, T, "o2"),
    ]
    batch = ObservedBatch("us", T, "o1", obs, [True, False])
    back = read_observed(_through_json(observed_record(batch)))
    assert back == batch and back.stored() == obs[:1] and back.app_ids == [730, 570]
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


@pytest.mark.parametrize(
    "value",
    [None, "730", [1, 2], {"cc": "us"}, {"cc": "us", "fetched_at": "yesterday", "entries": []}],
)
def test_anything_else_is_a_bad_record(value: object) -> None:
    with pytest.raises(BadRecord):
        read_raw(value)
    with pytest.raises(BadRecord):
        read_observed(value)
