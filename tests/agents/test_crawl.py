"""The crawl agent: requests of one partition's apps when the volume allows, one per region.

The store is a fake that records what it was asked and answers from a price list. A partition
with a full batch (``STEAM_BATCH_SIZE``, production's 100) is priced at once in a request of its
own; a trickle goes out mixed after ``STEAM_BATCH_WAIT_SECONDS`` (production's default), never
as one request per partition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from steamprice.agents import crawl
from steamprice.batches import crawl_record, partition_for, read_raw
from steamprice.metrics import Metrics
from steamprice.schedule import FAILED, PRICED
from steamprice.store_client import FetchResult
from steamprice.topics import prices_raw_topic
from tests.support.agents import FakeService, Sent, acked, processed

T0 = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)
REGIONS = ("us", "de")
PARTITIONS = crawl.app.conf.topic_partitions
SIZE = crawl.settings.steam_batch_size


def of_partition(partition: int, n: int, start: int = 1) -> list[int]:
    return [a for a in range(start, start + 40 * n) if partition_for(a, PARTITIONS) == partition][
        :n
    ]


class FakeStore:
    def __init__(self) -> None:
        self.asked: list[tuple[tuple[int, ...], str]] = []
        self.failing: dict[tuple[int, str], str] = {}

    async def fetch_batch(self, app_ids: list[int], cc: str) -> FetchResult:
        self.asked.append((tuple(app_ids), cc))
        result = FetchResult()
        for app_id in app_ids:
            if (app_id, cc) in self.failing:
                result.errors[app_id] = self.failing[(app_id, cc)]
            else:
                result.entries[app_id] = json.dumps({"success": True, "data": [], "id": app_id})
        return result

    def requests(self, cc: str = "us") -> list[tuple[int, ...]]:
        return [ids for ids, c in self.asked if c == cc]


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    fake = FakeStore()
    monkeypatch.setattr(crawl, "store", FakeService(fetch_batch=fake.fetch_batch))
    monkeypatch.setattr(
        crawl, "settings", dataclasses.replace(crawl.settings, steam_countries=REGIONS)
    )
    return fake


async def put(agent: Any, partition: int, app_ids: list[int]) -> Any:
    return await agent.put(crawl_record(T0, app_ids), partition=partition)


def raw_records(sent: Sent) -> list[tuple[int | None, str, list[int]]]:
    """(partition, region, app ids) of every prices-raw record sent."""
    name = prices_raw_topic.get_topic_name()
    out = []
    for r in sent.records:
        if r.topic == name:
            batch = read_raw(json.loads(json.dumps(r.value)))
            assert all(json.loads(e)["id"] == a for a, e in batch.entries)
            out.append((r.partition, batch.cc, [a for a, _ in batch.entries]))
    return out


async def test_a_full_partition_is_one_request_per_region_and_one_record_each(
    store: FakeStore, sent: Sent
) -> None:
    apps = of_partition(5, SIZE)
    async with crawl.crawl.test_context() as agent:
        first = await put(agent, 5, apps[:60])
        second = await put(agent, 5, apps[60:])
        for event in (first, second):
            await processed(event, timeout=1.0)  # a full batch: no wait

    assert store.asked == [(tuple(apps), cc) for cc in REGIONS]
    assert raw_records(sent) == [(5, cc, apps) for cc in REGIONS]
    [(partition, commands)] = sent.schedule_commands()
    assert partition == 5
    assert [c.app_id for c in commands] == apps and {c.op for c in commands} == {PRICED}


async def test_a_trickle_of_several_partitions_is_one_mixed_request_after_the_wait(
    store: FakeStore, sent: Sent
) -> None:
    groups = {p: of_partition(p, 3) for p in (1, 4, 6)}
    async with crawl.crawl.test_context() as agent:
        started = asyncio.get_running_loop().time()
        events = [await put(agent, p, ids) for p, ids in groups.items()]
        for event in events:
            await processed(event, timeout=10)
        took = asyncio.get_running_loop().time() - started

    assert took >= crawl.settings.steam_batch_wait_seconds
    every = [a for ids in groups.values() for a in ids]
    assert store.requests("us") == [tuple(every)]  # one request, not one per partition
    # Its answer still goes out as one record per partition, each to its own partition.
    assert sorted(raw_records(sent)) == sorted(
        (p, cc, ids) for p, ids in groups.items() for cc in REGIONS
    )
    assert sorted((p, [c.app_id for c in cmds]) for p, cmds in sent.schedule_commands()) == sorted(
        groups.items()
    )


async def test_a_record_is_acked_once_every_app_it_brought_was_crawled(
    store: FakeStore, sent: Sent
) -> None:
    apps = of_partition(2, SIZE + 30)
    async with crawl.crawl.test_context() as agent:
        big = await put(agent, 2, apps)
        await asyncio.sleep(0.3)
        # The first SIZE went out at once; the record waits for its last 30 (the wait).
        assert store.requests("us") == [tuple(apps[:SIZE])]
        assert acked([big]) == [False]
        await processed(big, timeout=10)
    assert store.requests("us") == [tuple(apps[:SIZE]), tuple(apps[SIZE:])]


async def test_a_region_that_fails_fails_the_app_but_the_others_flow(
    store: FakeStore, sent: Sent
) -> None:
    apps = of_partition(0, 5)
    store.failing[(apps[0], "de")] = "timeout"
    async with crawl.crawl.test_context() as agent:
        await processed(await put(agent, 0, apps), timeout=10)

    assert raw_records(sent) == [(0, "us", apps), (0, "de", apps[1:])]
    ops = {c.app_id: c for _, cmds in sent.schedule_commands() for c in cmds}
    assert ops[apps[0]].op == FAILED and ops[apps[0]].reason == "timeout"
    assert {ops[a].op for a in apps[1:]} == {PRICED}
    assert {p for p, _ in sent.schedule_commands()} == {0}


async def test_the_reseeded_apps_of_a_record_are_marked_in_their_raw_records(
    store: FakeStore, sent: Sent
) -> None:
    apps, others = of_partition(4, 5), of_partition(1, 2)
    store.failing[(apps[0], "de")] = "timeout"
    async with crawl.crawl.test_context() as agent:
        first = await agent.put(crawl_record(T0, apps, reseeded=apps[:2]), partition=4)
        second = await put(agent, 1, others)
        for event in (first, second):
            await processed(event, timeout=10)

    assert store.requests("us") == [tuple(apps + others)]  # one mixed request
    name = prices_raw_topic.get_topic_name()
    batches = [
        (r.partition, read_raw(json.loads(json.dumps(r.value))))
        for r in sent.records
        if r.topic == name
    ]
    marked = {(p, b.cc): b.reseeded for p, b in batches}
    assert marked == {
        (4, "us"): frozenset(apps[:2]),
        (4, "de"): frozenset(apps[1:2]),  # apps[0] has no "de" answer to mark
        (1, "us"): frozenset(),
        (1, "de"): frozenset(),
    }


async def test_the_shape_before_batches_is_crawled_and_garbage_is_counted(
    store: FakeStore, sent: Sent, metrics: Metrics
) -> None:
    [app_id] = of_partition(3, 1)
    async with crawl.crawl.test_context() as agent:
        old = await agent.put(
            {"app_id": app_id, "requested_at": T0.isoformat()}, key=app_id, partition=3
        )
        junk = await agent.put({"nonsense": True}, partition=3)
        await processed(junk, timeout=1.0)  # nothing to crawl: acked at once
        await processed(old, timeout=10)

    assert store.requests("us") == [(app_id,)]
    invalid = {"source": "crawl-requests", "reason": "invalid"}
    assert metrics.registry.get_sample_value("steam_bad_input_total", invalid) == 1
