"""Crawl agent: batches due apps into paced ``appdetails`` requests, one per region.

Each answer goes on ``prices-raw`` as one record per partition its apps belong to (see
``steamprice.batches`` for why the partition must be the app id key's own).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from steamprice.app import app, settings
from steamprice.batches import RawBatch, by_partition, raw_record
from steamprice.batching import Batcher
from steamprice.models import CrawlRequest, ScheduleCommand
from steamprice.schedule import FAILED, PRICED
from steamprice.services import metrics, store
from steamprice.topics import crawl_requests_topic, prices_raw_topic, schedule_topic

logger = logging.getLogger(__name__)


async def publish_raw(
    cc: str, fetched_at: datetime, entries: dict[int, str], reseeded: frozenset[int] = frozenset()
) -> int:
    """One ``prices-raw`` record per partition of the answered apps; returns how many."""
    partitions = prices_raw_topic.partitions or app.conf.topic_partitions
    groups = by_partition(sorted(entries), partitions)
    for partition, app_ids in sorted(groups.items()):
        batch = RawBatch(
            cc, fetched_at, [(a, entries[a]) for a in app_ids], reseeded.intersection(app_ids)
        )
        await prices_raw_topic.send(value=raw_record(batch), partition=partition)
    return len(groups)


async def crawl_batch(requests: Sequence[CrawlRequest]) -> None:
    """Price one batch in every region; every app gets ``priced`` or ``failed`` back.

    ``priced`` when every region answered, else ``failed`` with the first region's reason
    (prices from the regions that did answer still flow on).
    """
    # Ids are deduplicated within a batch (the scheduler already does it across batches).
    app_ids = sorted({r.app_id for r in requests})
    reseeded = frozenset(r.app_id for r in requests if r.seeded)
    metrics.batch_size.labels("crawl").observe(len(app_ids))
    started = time.monotonic()
    errors: dict[int, str] = {}
    for cc in settings.steam_countries:
        fetched_at = datetime.now(UTC)
        result = await store.fetch_batch(app_ids, cc)
        records = await publish_raw(cc, fetched_at, result.entries, reseeded)
        for app_id, reason in result.errors.items():
            errors.setdefault(app_id, reason)
        metrics.kafka_messages.labels("prices-raw", "produced").inc(records)
    done_at = datetime.now(UTC)
    for app_id in app_ids:
        why = errors.get(app_id, "")
        await schedule_topic.send(
            key=app_id,
            value=ScheduleCommand(
                app_id=app_id, op=FAILED if why else PRICED, at=done_at, reason=why
            ),
        )
    metrics.games_processed.labels("crawl", "ok").inc(len(app_ids) - len(errors))
    metrics.games_processed.labels("crawl", "error").inc(len(errors))
    metrics.task_duration_seconds.labels("crawl").observe(time.monotonic() - started)
    logger.info(
        "Crawled %d apps in %d regions (%d failed) in %.1f s",
        len(app_ids),
        len(settings.steam_countries),
        len(errors),
        time.monotonic() - started,
    )


@app.agent(crawl_requests_topic, name="crawl")
async def crawl(stream: Any) -> None:
    """Stateless: manual acks after each batch keep it at-least-once."""
    await store.maybe_start()
    batcher = Batcher(
        stream.noack(), settings.steam_batch_size, settings.steam_batch_wait_seconds, crawl_batch
    )
    await batcher.run()
