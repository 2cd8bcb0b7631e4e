"""Seed intake and the per-app schedule: validate, re-key, decide when to crawl.

The dispatcher does not scan the app-state table: a :class:`~steamprice.schedule.DueIndex` (a
heap per priority, in memory) answers "what is due now" in O(due). It is derived data, not state:
it is rebuilt from the table each time a rebalance's table recovery completes (before the
streams resume, so the schedule agent cannot race the rebuild), cleared when partitions are
revoked, and kept current by the schedule agent, the only writer of the fields it mirrors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from steamprice.app import app, settings
from steamprice.models import CrawlRequest, FailedInput, ScheduleCommand
from steamprice.schedule import (
    RECHECK,
    SEED,
    BadSeed,
    DueIndex,
    LogThrottle,
    SchedulePolicy,
    decide,
    dispatch_budget,
    parse_seed,
)
from steamprice.services import metrics
from steamprice.tables import app_state_table
from steamprice.topics import (
    app_ids_failed_topic,
    app_ids_topic,
    crawl_requests_topic,
    schedule_topic,
)

logger = logging.getLogger(__name__)

policy = SchedulePolicy(
    interval=timedelta(seconds=settings.recrawl_interval_seconds),
    dedupe=timedelta(seconds=settings.seed_dedupe_seconds),
    max_failures=settings.max_failures,
    retry_base=timedelta(seconds=settings.failed_retry_base_seconds),
    track_new=settings.discovery_track_new_apps,
)
# Released apps come back after a few ticks if their recheck never reached the schedule agent.
due_index = DueIndex(grace_seconds=max(60.0, 6 * settings.schedule_tick_seconds))
# A flood of garbage is counted and routed message by message, but logged in moderation.
bad_seed_log = LogThrottle(burst=20, window=60.0)
# So are re-seeds coalesced into a later re-check (a whole catalog seeded twice in a minute).
recheck_log = LogThrottle(burst=20, window=60.0)
REBUILD_YIELD_EVERY = 5000


def now() -> datetime:
    return datetime.now(UTC)


def sent_at(stream: Any) -> datetime | None:
    """When the seed being processed was put on the seed topic (its Kafka timestamp)."""
    timestamp = stream.current_event.message.timestamp
    return datetime.fromtimestamp(timestamp, UTC) if timestamp and timestamp > 0 else None


@app.task  # type: ignore[untyped-decorator]
async def declare_failed_topic() -> None:
    """Create app-ids-failed with the pipeline's partitions as soon as the worker starts.

    No agent consumes it, so Faust would only create it on the first send; a reader that asks
    for it earlier (``kcat -C``, a dashboard) makes the broker auto-create a one-partition
    topic, and sends keyed to any other partition would then wait forever for a leader.
    """
    await app_ids_failed_topic.maybe_declare()


@app.agent(app_ids_topic, name="intake")
async def intake(stream: Any) -> None:
    """Seed topic -> schedule topic keyed by app id; garbage -> app-ids-failed with a reason."""
    async for value in stream:
        try:
            app_id = parse_seed(value)
        except BadSeed as exc:
            metrics.bad_input.labels("seed", "invalid").inc()
            log_it, suppressed = bad_seed_log.allow(time.monotonic())
            if suppressed:
                logger.warning("%d more rejected seed messages were not logged", suppressed)
            if log_it:
                logger.warning("Rejected seed message (%s): %.80r", exc, value)
            raw = (
                value.decode("utf-8", "replace")[:1024] if isinstance(value, bytes) else str(value)
            )
            await app_ids_failed_topic.send(
                key=None, value=FailedInput(reason=str(exc), at=now(), raw=raw)
            )
            continue
        metrics.kafka_messages.labels("app-ids", "consumed").inc()
        await schedule_topic.send(
            key=app_id,
            value=ScheduleCommand(app_id=app_id, op=SEED, at=now(), sent_at=sent_at(stream)),
        )


@app.agent(schedule_topic, name="schedule")
async def schedule(stream: Any) -> None:
    """Apply schedule commands to the app-state table; send due apps to the crawler."""
    async for cmd in stream:
        prev = app_state_table.get(cmd.app_id)
        decision = decide(prev, cmd, policy)
        if decision.state is not None:
            app_state_table[cmd.app_id] = decision.state
        due_index.update(cmd.app_id, decision.state or prev)
        if decision.dispatch:
            await crawl_requests_topic.send(
                key=cmd.app_id,
                value=CrawlRequest(app_id=cmd.app_id, requested_at=cmd.at, seeded=decision.seeded),
            )
            metrics.games_processed.labels("schedule", cmd.op).inc()
        if decision.covered:
            metrics.games_processed.labels("schedule", "seed_covered").inc()
        if decision.recheck_at is not None:
            metrics.games_processed.labels("schedule", "recheck_coalesced").inc()
            log_it, suppressed = recheck_log.allow(time.monotonic())
            if suppressed:
                logger.info("%d more seeds were coalesced into re-checks", suppressed)
            if log_it:
                logger.info(
                    "Seed of app %d coalesced into one re-check at %s (at most one request"
                    " per SEED_DEDUPE_SECONDS; the last was %s)",
                    cmd.app_id,
                    decision.recheck_at.isoformat(timespec="seconds"),
                    prev.last_requested.isoformat(timespec="seconds")
                    if prev and prev.last_requested
                    else "never",
                )
        if decision.failed_reason:
            metrics.games_processed.labels("schedule", "failed").inc()
            logger.warning(
                "App %d moved to the failed state: %s", cmd.app_id, decision.failed_reason
            )
            await app_ids_failed_topic.send(
                key=cmd.app_id,
                value=FailedInput(reason=decision.failed_reason, at=cmd.at, app_id=cmd.app_id),
            )


@app_state_table.on_recover
async def rebuild_due_index() -> None:
    """After each rebalance's recovery (streams still paused): index the apps now owned here."""
    started = time.monotonic()
    due_index.clear()
    for n, (app_id, state) in enumerate(app_state_table.items(), 1):
        due_index.update(app_id, state)
        if n % REBUILD_YIELD_EVERY == 0:
            await asyncio.sleep(0)  # keep heartbeats and the web server alive
    due_index.ready = True
    logger.info(
        "Due index rebuilt: %d apps (%d failed) in %.1f s",
        due_index.tracked,
        due_index.failed,
        time.monotonic() - started,
    )


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def forget_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
    """Whatever this worker owned may move: stop dispatching until the rebuild."""
    due_index.clear()


@app.timer(interval=settings.schedule_tick_seconds)  # type: ignore[untyped-decorator]
async def dispatch_due_apps() -> None:
    """Ask the schedule agent to re-price the apps whose time has come, within the budget."""
    if not due_index.ready:
        return
    moment = now()
    budget = dispatch_budget(
        per_minute=settings.steam_max_requests_per_minute,
        batch_size=settings.steam_batch_size,
        regions=len(settings.steam_countries),
        tick_seconds=settings.schedule_tick_seconds,
        in_flight=due_index.pending,
    )
    released = due_index.pop_due(moment.timestamp(), budget)
    for app_id in released:
        await schedule_topic.send(
            key=app_id, value=ScheduleCommand(app_id=app_id, op=RECHECK, at=moment)
        )
    waiting = due_index.count_due(moment.timestamp())
    metrics.queue_size.labels("tracked").set(due_index.tracked)
    metrics.queue_size.labels("due").set(waiting["due"])
    metrics.queue_size.labels("changed").set(waiting["changed"])
    metrics.queue_size.labels("pending").set(due_index.pending)
    metrics.queue_size.labels("failed").set(due_index.failed)
