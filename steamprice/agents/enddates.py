"""Discount end dates beside the pipeline: asks queued in MySQL, answered from GetItems.

The change agent hands on the discounted observations of each batch (``end-date-asks``, same
partition). The ``end-date-asks`` agent records in ``discount_ends`` the ones that need asking
(once per discount per sweep, ``enddates.needs_end_date``) and acks once that commits: it never
waits on GetItems, so a GetItems outage or 429 storm holds no Kafka message, no rebalance and
nothing of the prices' path. The :class:`EndDateService`, on the leader only (one IP, one
GetItems budget), answers the queue oldest first, region by region, as many apps per request as
a URL holds, and writes each answer with the price rows it concerns. A failed try leaves the
question queued and tries again later (growing waits): trouble delays end dates, never prices
or alerts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from mode import Service

from steamprice import discount_ends
from steamprice.app import app, settings
from steamprice.batching import Batcher
from steamprice.database import DatabaseStopping, describe_error
from steamprice.enddates import (
    KNOWN,
    MAX_IDS_PER_REQUEST,
    REQUEST_FAILED,
    RESWEEP_SHARE,
    Ask,
    BadAsks,
    read_asks,
)
from steamprice.services import database, metrics, store
from steamprice.topics import end_date_asks_topic

logger = logging.getLogger(__name__)

SINK = "discount_ends"
RESWEEP = timedelta(seconds=settings.recrawl_interval_seconds * RESWEEP_SHARE)
# Questions taken per region and round: a few requests' worth, so regions take turns.
PICK = 4 * MAX_IDS_PER_REQUEST
IDLE_SECONDS = 1.0
LEADER_POLL_SECONDS = 5.0
# After a failed try the questions wait this long, doubling on repeats (GetItems' own pause
# after a 429 or 403, when longer, is waited out first).
RETRY_FIRST_SECONDS = 30.0
RETRY_MAX_SECONDS = 900.0


async def record_asks(values: Sequence[Any]) -> None:
    """Queue the asks of a batch of records that need asking; count the rest as skipped."""
    asks: list[Ask] = []
    for value in values:
        try:
            asks.extend(read_asks(value))
        except BadAsks as exc:
            metrics.bad_input.labels("end-date-asks", "invalid").inc()
            logger.error("Skipped an end-date-asks record: %s", exc)
    if not asks:
        return

    async def work(cur: Any) -> tuple[int, int]:
        return await discount_ends.record_asks(cur, asks, RESWEEP)

    queued, skipped = await database.transaction(SINK, work)
    metrics.games_processed.labels("enddate_ask", "queued").inc(queued)
    metrics.games_processed.labels("enddate_ask", "skipped").inc(skipped)
    metrics.sink_rows.labels(SINK).inc(queued)
    if queued:
        logger.info(
            "End dates: %d discounts queued for GetItems, %d already asked", queued, skipped
        )


@app.agent(end_date_asks_topic, name="end-date-asks")
async def end_date_asks(stream: Any) -> None:
    """end-date-asks -> ``discount_ends``; acked once committed, like the MySQL sinks."""
    await database.maybe_start()
    batcher = Batcher(
        stream.noack(),
        settings.sink_batch_size,
        settings.sink_batch_seconds,
        record_asks,
        ack_errors=False,
        stop_on=(DatabaseStopping,),
        name="end_date_asks",
    )
    await batcher.run()


def retry_delay(failures: int, paused_for: float) -> float:
    """How long failed questions wait: GetItems' own pause, or a doubling wait with jitter."""
    base = min(RETRY_FIRST_SECONDS * 2 ** max(failures - 1, 0), RETRY_MAX_SECONDS)
    return float(max(paused_for, base * random.uniform(1.0, 1.25)))


class EndDateService(Service):
    """Answers the queued questions of ``discount_ends`` from GetItems (on the leader only)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._failures = 0

    @Service.task
    async def _run(self) -> None:
        await store.maybe_start()
        await database.maybe_start()
        while not self.should_stop:
            if not app.is_leader():
                await self.sleep(LEADER_POLL_SECONDS)
                continue
            try:
                answered = 0
                for cc in settings.steam_countries:
                    answered += await self._round(cc)
                await self._count_queue()
            except DatabaseStopping:
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.should_stop:
                    return
                # Nothing is lost: the questions stay queued in MySQL; the next round asks them.
                logger.exception("End dates failed (%s); retrying", describe_error(exc))
                metrics.games_processed.labels("enddate_round", "error").inc()
                await self.sleep(RETRY_FIRST_SECONDS)
                continue
            if not answered:
                await self.sleep(IDLE_SECONDS)

    async def _round(self, cc: str) -> int:
        """Ask GetItems about the oldest due questions of region ``cc``; how many it answered."""
        now = datetime.now(UTC)

        async def pick(cur: Any) -> list[discount_ends.Pending]:
            return await discount_ends.pending_asks(cur, cc, now, PICK)

        asked = await database.transaction(SINK, pick)
        if not asked:
            return 0
        results = await store.discount_ends([p.offer for p in asked], cc, wait_out_pauses=False)
        failed = sum(r.outcome == REQUEST_FAILED for r in results)
        self._failures = self._failures + 1 if failed else 0
        done = datetime.now(UTC)
        retry_at = done + timedelta(
            seconds=retry_delay(self._failures, store.items_pacer.paused_for)
        )

        async def write(cur: Any) -> tuple[int, int]:
            return await discount_ends.record_answers(cur, cc, asked, results, done, retry_at)

        answered, retried = await database.transaction(SINK, write)
        known = sum(r.outcome == KNOWN for r in results)
        if retried:
            logger.warning(
                "End dates in %s: GetItems gave no answer for %d discounts; asking again at %s",
                cc,
                retried,
                retry_at.isoformat(timespec="seconds"),
            )
        logger.info(
            "End dates in %s: %d discounts answered (%d with a known end)", cc, answered, known
        )
        return answered

    async def _count_queue(self) -> None:
        waiting, failing = await database.transaction(SINK, discount_ends.queue_counts)
        metrics.queue_size.labels("enddates_pending").set(waiting)
        metrics.queue_size.labels("enddates_failing").set(failing)


if settings.steam_getitems_max_requests_per_minute > 0:
    end_date_service = EndDateService()
    app.service(end_date_service)  # type: ignore[arg-type]
