"""The crawl agent: one request per region for a batch, one prices-raw record per partition.

The store is a fake that records what it was asked and answers from a price list; the batch
closes on its own after ``STEAM_BATCH_WAIT_SECONDS`` (production's default).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from steamprice.agents import crawl
from steamprice.batches import partition_for, read_raw
from steamprice.models import CrawlRequest, ScheduleCommand
from steamprice.schedule import FAILED, PRICED
from steamprice.store_client import FetchResult
from steamprice.topics import prices_raw_topic, schedule_topic
from tests.support.agents import FakeService, Sent, processed

T0 = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)
REGIONS = ("us", "de")
APPS = list(range(100, 140))  # spread over every partition


class FakeStore:
    def __init__(self, failing: dict[tuple[int, str], str] | None = None) -> None:
        self.asked: list[tuple[tuple[int, ...], str]] = []
        self.failing = failing or {}

    async def fetch_batch(self, app_ids: list[int], cc: str) -> FetchResult:
        self.asked.append((tuple(app_ids), cc))
        result = FetchResult()
        for app_id in app_ids:
            if (app_id, cc) in self.failing:
                result.errors[app_id] = self.failing[(app_id, cc)]
            else:
                result.entries[app_id] = json.dumps({"success": True, "data": [], "id": app_id})
        return result


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    fake = FakeStore()
    monkeypatch.setattr(crawl, "store", FakeService(fetch_batch=fake.fetch_batch))
    monkeypatch.setattr(
        crawl, "settings", dataclasses.replace(crawl.settings, steam_countries=REGIONS)
    )
    return fake


async def crawl_all(apps: list[int]) -> None:
    async with crawl.crawl.test_context() as agent:
        events = [
            await agent.put(CrawlRequest(app_id=a, requested_at=T0), key=a, partition=0)
            for a in apps
        ]
        for event in events:
            await processed(event)  # acked once the batch was crawled


async def test_one_request_per_region_and_one_record_per_partition(
    store: FakeStore, sent: Sent
) -> None:
    await crawl_all(APPS)
    assert store.asked == [(tuple(APPS), cc) for cc in REGIONS]
    partitions = crawl.app.conf.topic_partitions
    name = prices_raw_topic.get_topic_name()
    records = [r for r in sent.records if r.topic == name]
    for cc in REGIONS:
        mine = [r for r in records if r.value["cc"] == cc]
        # One record per partition the answer's apps fall in, each sent to that partition.
        assert len(mine) == len({partition_for(a, partitions) for a in APPS})
        seen: list[int] = []
        for r in mine:
            batch = read_raw(json.loads(json.dumps(r.value)))
            ids = [a for a, _ in batch.entries]
            assert {partition_for(a, partitions) for a in ids} == {r.partition}
            assert all(json.loads(e)["id"] == a for a, e in batch.entries)
            seen.extend(ids)
        assert sorted(seen) == APPS
    reports = sent.to(schedule_topic)
    assert sorted(k for k, _ in reports) == APPS
    assert all(isinstance(c, ScheduleCommand) and c.op == PRICED for _, c in reports)


async def test_a_region_that_fails_fails_the_app_but_the_others_flow(
    store: FakeStore, sent: Sent
) -> None:
    store.failing[(APPS[0], "de")] = "timeout"
    await crawl_all(APPS[:5])
    name = prices_raw_topic.get_topic_name()
    by_cc: dict[str, list[int]] = {}
    for r in sent.records:
        if r.topic == name:
            by_cc.setdefault(r.value["cc"], []).extend(a for a, _ in r.value["entries"])
    assert sorted(by_cc["us"]) == APPS[:5]
    assert sorted(by_cc["de"]) == APPS[1:5]
    ops: dict[int, Any] = {k: c for k, c in sent.to(schedule_topic)}
    assert ops[APPS[0]].op == FAILED and ops[APPS[0]].reason == "timeout"
    assert {ops[a].op for a in APPS[1:5]} == {PRICED}
