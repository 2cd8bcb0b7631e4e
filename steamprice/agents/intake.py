"""Seed intake and the per-app schedule: validate, group by partition, decide when to crawl.

Seeds arrive one per app (the seed topic is a contract); the intake forwards them in schedule
records of one partition each, and every other producer of schedule commands (the crawler's
answers, the dispatcher's re-checks, ``retry-failed``, the app-list poller) sends such records
too, so the schedule agent pays Faust's per-record costs once per batch, and each app-state key
is written in its own partition (see ``steamprice.batches``).

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
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from steamprice.app import app, settings
from steamprice.batches import BadRecord, read_schedule
from steamprice.models import AppState, FailedInput, ScheduleCommand
from steamprice.schedule import (
    RECHECK,
    SEED,
    BadSeed,
    Decision,
    DueIndex,
    LogThrottle,
    SchedulePolicy,
    decide,
    dispatch_budget,
    parse_seed,
)
from steamprice.seeds import SeedConsumer
from steamprice.services import metrics
from steamprice.tables import app_state, app_state_table, partition_reader, partition_writer
from steamprice.topics import (
    app_ids_failed_topic,
    app_ids_topic,
    schedule_topic,
    send_crawl_requests,
    send_schedule,
)

logger = logging.getLogger(__name__)
# Apps of a record applied between two turns of the other tasks (as the change agent's
# ``YIELD_EVERY``: the sinks and the crawler need turns while a record of 1,000 apps is applied).
YIELD_EVERY = 50

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


def sent_at(record: Any) -> datetime | None:
    """When a seed was put on the seed topic (its Kafka timestamp, in ms)."""
    timestamp = record.timestamp
    return datetime.fromtimestamp(timestamp / 1000, UTC) if timestamp and timestamp > 0 else None


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    # None stands for "now" (no timestamp): the latest of all.
    return None if a is None or b is None else max(a, b)


@app.task  # type: ignore[untyped-decorator]
async def declare_failed_topic() -> None:
    """Create app-ids-failed with the pipeline's partitions as soon as the worker starts.

    No agent consumes it, so Faust would only create it on the first send; a reader that asks
    for it earlier (``kcat -C``, a dashboard) makes the broker auto-create a one-partition
    topic, and sends keyed to any other partition would then wait forever for a leader.
    """
    await app_ids_failed_topic.maybe_declare()


async def reject_seed(value: Any, exc: BadSeed) -> Any:
    """Count and log a bad seed, send it to app-ids-failed; the send's delivery future back."""
    metrics.bad_input.labels("seed", "invalid").inc()
    log_it, suppressed = bad_seed_log.allow(time.monotonic())
    if suppressed:
        logger.warning("%d more rejected seed messages were not logged", suppressed)
    if log_it:
        logger.warning("Rejected seed message (%s): %.80r", exc, value)
    raw = value.decode("utf-8", "replace")[:1024] if isinstance(value, bytes) else str(value)
    return await app_ids_failed_topic.send(
        key=None, value=FailedInput(reason=str(exc), at=now(), raw=raw)
    )


async def forward_seeds(records: Sequence[Any]) -> None:
    """A fetch of seed records (``value``, ``timestamp`` in ms) -> one ``seed`` schedule record
    per partition (an app once per fetch); garbage -> app-ids-failed, record by record.

    Returns once the broker has all of it: the caller then commits the fetch's offsets.
    """
    seeds: dict[int, datetime | None] = {}
    rejected: list[Any] = []
    good = 0
    for record in records:
        try:
            app_id = parse_seed(record.value)
        except BadSeed as exc:
            rejected.append(await reject_seed(record.value, exc))
            continue
        good += 1
        sent = sent_at(record)
        seeds[app_id] = _later(seeds[app_id], sent) if app_id in seeds else sent
    if seeds:
        at = now()
        commands = (ScheduleCommand(a, SEED, at, sent_at=s) for a, s in seeds.items())
        await send_schedule(commands, delivered=True)
    await asyncio.gather(*rejected)
    if good:
        metrics.kafka_messages.labels("app-ids", "consumed").inc(good)


seed_consumer = SeedConsumer(
    kafka_broker=settings.kafka_broker,
    topic=app_ids_topic.get_topic_name(),
    group=f"{settings.app_id}-intake",
    handler=forward_seeds,
    metrics=metrics,
    # The group of Faust's consumer read the seed topic before this one did.
    upgrade_from_group=settings.app_id,
    instance_id=lambda: app.conf.consumer_group_instance_id or None,
    session_timeout=settings.broker_session_timeout,
    declare=app_ids_topic.maybe_declare,
)
app.service(seed_consumer)  # type: ignore[arg-type]


def _coalesced(cmd: ScheduleCommand, prev: AppState | None, decision: Decision) -> None:
    log_it, suppressed = recheck_log.allow(time.monotonic())
    if suppressed:
        logger.info("%d more seeds were coalesced into re-checks", suppressed)
    if log_it and decision.recheck_at is not None:
        logger.info(
            "Seed of app %d coalesced into one re-check at %s (at most one request"
            " per SEED_DEDUPE_SECONDS; the last was %s)",
            cmd.app_id,
            decision.recheck_at.isoformat(timespec="seconds"),
            prev.last_requested.isoformat(timespec="seconds")
            if prev and prev.last_requested
            else "never",
        )


async def apply_commands(commands: Sequence[ScheduleCommand], partition: int) -> None:
    """Apply one record's commands to the app-state table (all its apps are of ``partition``);
    the apps to price now go to the crawler in one record, to the same partition."""
    dispatched: list[int] = []
    # Of those, the apps priced because someone seeded them: their end dates are asked again.
    reseeded: list[int] = []
    counts: Counter[str] = Counter()
    parked: list[tuple[ScheduleCommand, str]] = []
    # New states are written to the table only after the crawl requests are on the broker: a
    # redelivered record meets the old state and dispatches again (at-least-once), where a
    # pending mark that outlived a lost request would hold the app until the pending timeout.
    states: dict[int, AppState] = {}
    read = partition_reader(app_state_table, partition)
    stored: dict[int, AppState | None] = {}  # as the table holds them, read once per app
    for n, cmd in enumerate(commands, 1):
        if n % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # a record holds up to 1,000 apps: others get turns
        if cmd.app_id not in states and cmd.app_id not in stored:
            stored[cmd.app_id] = app_state(read(cmd.app_id))
        prev = states[cmd.app_id] if cmd.app_id in states else stored[cmd.app_id]
        decision = decide(prev, cmd, policy)
        if decision.state is not None:
            states[cmd.app_id] = decision.state
        if decision.dispatch:
            dispatched.append(cmd.app_id)
            if decision.seeded:
                reseeded.append(cmd.app_id)
            counts[cmd.op] += 1
        if decision.covered:
            counts["seed_covered"] += 1
        if decision.recheck_at is not None:
            counts["recheck_coalesced"] += 1
            _coalesced(cmd, prev, decision)
        if decision.failed_reason:
            counts["failed"] += 1
            parked.append((cmd, decision.failed_reason))
    read.counted()
    if dispatched:
        await send_crawl_requests(commands[0].at, {partition: dispatched}, reseeded)
    write = partition_writer(app_state_table, partition)
    for n, (app_id, state) in enumerate(states.items(), 1):
        if n % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        write[app_id] = state.to_data()
    write.counted()
    for app_id in {cmd.app_id for cmd in commands}:
        due_index.update(app_id, states[app_id] if app_id in states else stored[app_id])
    for cmd, reason in parked:
        logger.warning("App %d moved to the failed state: %s", cmd.app_id, reason)
        await app_ids_failed_topic.send(
            key=cmd.app_id, value=FailedInput(reason=reason, at=cmd.at, app_id=cmd.app_id)
        )
    for status, n in counts.items():
        metrics.games_processed.labels("schedule", status).inc(n)


@app.agent(schedule_topic, name="schedule")
async def schedule(stream: Any) -> None:
    """Apply schedule records to the app-state table; send due apps to the crawler."""
    async for event in stream.events():
        try:
            commands = read_schedule(event.value)
        except BadRecord as exc:
            metrics.bad_input.labels("schedule", "invalid").inc()
            logger.error("Skipped a schedule record at %s: %s", event.message.tp, exc)
            continue
        if commands:
            await apply_commands(commands, event.message.partition)


@app_state_table.on_recover
async def rebuild_due_index() -> None:
    """After each rebalance's recovery (streams still paused): index the apps now owned here."""
    started = time.monotonic()
    due_index.clear()
    for n, (app_id, value) in enumerate(app_state_table.items(), 1):
        due_index.update(app_id, app_state(value))
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
    if released:
        await send_schedule(ScheduleCommand(a, RECHECK, moment) for a in released)
    waiting = due_index.count_due(moment.timestamp())
    metrics.queue_size.labels("tracked").set(due_index.tracked)
    metrics.queue_size.labels("due").set(waiting["due"])
    metrics.queue_size.labels("changed").set(waiting["changed"])
    metrics.queue_size.labels("pending").set(due_index.pending)
    metrics.queue_size.labels("failed").set(due_index.failed)
