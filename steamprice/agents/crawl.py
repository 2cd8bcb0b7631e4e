"""Crawl agent: groups due apps into paced ``appdetails`` requests, one per region.

Crawl requests arrive as records of one partition's apps; a request to Steam takes the apps of
one partition when a partition has a full batch (``steamprice.batching.PartitionBatcher``), so
its answer travels on as one record per region, in that partition, to the change agent. A trickle
mixes partitions as plain batching would: Steam's budget, not the record size, is what is scarce.
Each answer goes on ``prices-raw`` as one record per partition its apps belong to (see
``steamprice.batches`` for why the partition must be the app id key's own); the apps then go
back to the scheduler as ``priced`` or ``failed``, one record per partition.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from steamprice.app import app, settings
from steamprice.batches import BadRecord, RawBatch, raw_record, read_crawl_batch
from steamprice.batching import PartitionBatcher, Requested
from steamprice.models import ScheduleCommand
from steamprice.schedule import FAILED, PRICED
from steamprice.services import metrics, store
from steamprice.topics import crawl_requests_topic, partitions, prices_raw_topic, send_schedule

logger = logging.getLogger(__name__)


def group(apps: list[tuple[int, int]]) -> dict[int, list[int]]:
    """(partition, app id) pairs by partition, app ids in order, each once."""
    groups: dict[int, dict[int, None]] = {}
    for partition, app_id in apps:
        groups.setdefault(partition, {})[app_id] = None
    return {p: list(ids) for p, ids in groups.items()}


async def publish_raw(
    cc: str,
    fetched_at: datetime,
    groups: dict[int, list[int]],
    entries: dict[int, str],
    reseeded: frozenset[int] = frozenset(),
) -> int:
    """One ``prices-raw`` record per partition of the answered apps; returns how many."""
    records = 0
    for partition, app_ids in sorted(groups.items()):
        answered = [(a, entries[a]) for a in app_ids if a in entries]
        if answered:
            marked = reseeded.intersection(a for a, _ in answered)
            batch = RawBatch(cc, fetched_at, answered, marked)
            await prices_raw_topic.send(value=raw_record(batch), partition=partition)
            records += 1
    return records


async def crawl_request(
    apps: list[tuple[int, int]], reseeded: frozenset[int] = frozenset()
) -> None:
    """Price one request's apps in every region; every app gets ``priced`` or ``failed`` back.

    ``priced`` when every region answered, else ``failed`` with the first region's reason
    (prices from the regions that did answer still flow on). ``reseeded``: the apps priced
    because someone seeded them; their ``prices-raw`` records say so, and the change agent asks
    their end dates again.
    """
    groups = group(apps)
    app_ids = [a for ids in groups.values() for a in ids]
    metrics.batch_size.labels("crawl").observe(len(app_ids))
    started = time.monotonic()
    errors: dict[int, str] = {}
    for cc in settings.steam_countries:
        fetched_at = datetime.now(UTC)
        result = await store.fetch_batch(app_ids, cc)
        records = await publish_raw(cc, fetched_at, groups, result.entries, reseeded)
        for app_id, reason in result.errors.items():
            errors.setdefault(app_id, reason)
        metrics.kafka_messages.labels("prices-raw", "produced").inc(records)
    done_at = datetime.now(UTC)
    for partition, ids in groups.items():
        await send_schedule(
            (
                ScheduleCommand(a, FAILED, done_at, errors[a])
                if a in errors
                else ScheduleCommand(a, PRICED, done_at)
                for a in ids
            ),
            partition=partition,
        )
    metrics.games_processed.labels("crawl", "ok").inc(len(app_ids) - len(errors))
    metrics.games_processed.labels("crawl", "error").inc(len(errors))
    metrics.task_duration_seconds.labels("crawl").observe(time.monotonic() - started)
    logger.info(
        "Crawled %d apps of %d partition(s) in %d regions (%d failed) in %.1f s",
        len(app_ids),
        len(groups),
        len(settings.steam_countries),
        len(errors),
        time.monotonic() - started,
    )


def requested(event: Any) -> Requested:
    """The apps of a crawl-requests record, the re-seeded flagged (none, logged and counted, when
    it is garbage)."""
    try:
        batch = read_crawl_batch(event.value)
    except BadRecord as exc:
        metrics.bad_input.labels("crawl-requests", "invalid").inc()
        logger.error("Skipped a crawl-requests record at %s: %s", event.message.tp, exc)
        return Requested([])
    return Requested(batch.app_ids, batch.reseeded)


@app.agent(crawl_requests_topic, name="crawl")
async def crawl(stream: Any) -> None:
    """Stateless: manual acks once every app of a record was crawled keep it at-least-once."""
    await store.maybe_start()
    batcher = PartitionBatcher(
        stream.noack(),
        settings.steam_batch_size,
        settings.steam_batch_wait_seconds,
        crawl_request,
        requested,
        partitions=partitions(),
        name="crawl",
    )
    await batcher.run()
