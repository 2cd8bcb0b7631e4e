"""Seed intake and the per-app schedule: validate, re-key, decide when to crawl."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from steamprice.app import app, settings
from steamprice.models import CrawlRequest, FailedInput, ScheduleCommand
from steamprice.schedule import RECHECK, SEED, BadSeed, SchedulePolicy, decide, parse_seed
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
)


def now() -> datetime:
    return datetime.now(UTC)


@app.agent(app_ids_topic, name="intake")
async def intake(stream: Any) -> None:
    """Seed topic -> schedule topic keyed by app id; garbage -> app-ids-failed with a reason."""
    async for value in stream:
        try:
            app_id = parse_seed(value)
        except BadSeed as exc:
            metrics.bad_input.labels("seed", "invalid").inc()
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
            key=app_id, value=ScheduleCommand(app_id=app_id, op=SEED, at=now())
        )


@app.agent(schedule_topic, name="schedule")
async def schedule(stream: Any) -> None:
    """Apply schedule commands to the app-state table; send due apps to the crawler."""
    async for cmd in stream:
        decision = decide(app_state_table.get(cmd.app_id), cmd, policy)
        if decision.state is not None:
            app_state_table[cmd.app_id] = decision.state
        if decision.dispatch:
            await crawl_requests_topic.send(
                key=cmd.app_id, value=CrawlRequest(app_id=cmd.app_id, requested_at=cmd.at)
            )
            metrics.games_processed.labels("schedule", cmd.op).inc()
        if decision.failed_reason:
            metrics.games_processed.labels("schedule", "failed").inc()
            logger.warning(
                "App %d moved to the failed state: %s", cmd.app_id, decision.failed_reason
            )
            await app_ids_failed_topic.send(
                key=cmd.app_id,
                value=FailedInput(reason=decision.failed_reason, at=cmd.at, app_id=cmd.app_id),
            )


@app.timer(interval=settings.schedule_tick_seconds)  # type: ignore[untyped-decorator]
async def find_due_apps() -> None:
    """Ask the schedule agent to re-price every app whose time has come (local partitions)."""
    moment = now()
    due = failed = tracked = 0
    for app_id, state in list(app_state_table.items()):
        tracked += 1
        if state.failed:
            failed += 1
        elif state.next_due <= moment:
            due += 1
            await schedule_topic.send(
                key=app_id, value=ScheduleCommand(app_id=app_id, op=RECHECK, at=moment)
            )
    metrics.queue_size.labels("tracked").set(tracked)
    metrics.queue_size.labels("due").set(due)
    metrics.queue_size.labels("failed").set(failed)
