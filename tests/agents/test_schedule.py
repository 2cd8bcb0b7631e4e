"""The schedule agent: each command's decision lands in the app-state table and on the topics.

Commands arrive in records of one op for apps of one partition (``steamprice.batches``); they
carry their own time (``at``), so the windows below are production's: the dedupe window, the
recrawl interval and the failure limit come from the worker's settings.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from steamprice.agents.intake import due_index, schedule
from steamprice.app import app, settings
from steamprice.batches import partition_for, read_crawl, read_crawl_batch, schedule_record
from steamprice.metrics import Metrics
from steamprice.models import AppState, FailedInput, ScheduleCommand
from steamprice.schedule import FAILED, PRICED, RECHECK, RETRY, SEED
from steamprice.tables import app_state, app_state_table
from steamprice.topics import app_ids_failed_topic, crawl_requests_topic
from tests.support.agents import Sent, processed, turns

APP = 730
PARTITIONS = app.conf.topic_partitions
HOME = partition_for(APP, PARTITIONS)  # the partition of app 730
T0 = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)
DEDUPE = timedelta(seconds=settings.seed_dedupe_seconds)
INTERVAL = timedelta(seconds=settings.recrawl_interval_seconds)


@pytest.fixture(autouse=True)
def _fresh_due_index() -> Iterator[None]:
    due_index.clear()
    yield
    due_index.clear()


class Driver:
    """Puts commands through the schedule agent, one at a time."""

    def __init__(self, agent: Any, sent: Sent) -> None:
        self.agent = agent
        self.sent = sent

    async def __call__(
        self, op: str, at: datetime, app_id: int = APP, reason: str = "", partition: int = -1
    ) -> None:
        """One command in a record of its own, in the app's partition unless told otherwise."""
        cmd = ScheduleCommand(app_id, op, at, reason)
        await self.record([cmd], partition)

    async def record(self, commands: list[ScheduleCommand], partition: int = -1) -> None:
        if partition < 0:
            partition = partition_for(commands[0].app_id, PARTITIONS)
        value = json.loads(json.dumps(schedule_record(commands)))  # as the wire has it
        event = await self.agent.put(value, partition=partition)
        await processed(event)

    def dispatched(self) -> list[tuple[int, datetime]]:
        out = []
        for key, request in self.sent.to(crawl_requests_topic):
            assert key is None and isinstance(request, dict)
            at = datetime.fromisoformat(request["requested_at"])
            out.extend((app_id, at) for app_id in read_crawl(request))
        return out

    def state(self, app_id: int = APP) -> AppState:
        state = app_state(app_state_table.get(app_id))
        assert state is not None, f"app {app_id} is not in the app-state table"
        return state


@pytest.fixture
async def drive(sent: Sent) -> AsyncIterator[Driver]:
    async with schedule.test_context() as agent:
        yield Driver(agent, sent)


def dispatches(metrics: Metrics, op: str) -> float:
    labels = {"task": "schedule", "status": op}
    return metrics.registry.get_sample_value("steam_games_processed_total", labels) or 0.0


async def test_a_seed_tracks_the_app_and_dispatches_it(
    drive: Driver, sent: Sent, metrics: Metrics
) -> None:
    await drive(SEED, T0)

    assert drive.dispatched() == [(APP, T0)]
    state = drive.state()
    assert (state.pending, state.last_requested, state.tracked_since) == (True, T0, T0)
    # The write reached the table's changelog, keyed by the app, in the record's partition.
    [logged] = [r for r in sent.records if r.topic == app_state_table.changelog_topic_name]
    assert (logged.key, app_state(logged.value), logged.partition) == (APP, state, HOME)
    assert due_index.tracked == 1 and due_index.pending == 1
    assert dispatches(metrics, SEED) == 1


async def test_a_record_of_many_apps_writes_each_in_its_partition_and_dispatches_once(
    drive: Driver, sent: Sent, metrics: Metrics
) -> None:
    apps = [a for a in range(1, 400) if partition_for(a, PARTITIONS) == 6][:25]
    await drive.record([ScheduleCommand(a, SEED, T0) for a in apps])

    # Every app's state went to the changelog in the record's partition, keyed by its app.
    logged = [r for r in sent.records if r.topic == app_state_table.changelog_topic_name]
    assert [(r.key, r.partition) for r in logged] == [(a, 6) for a in apps]
    # One crawl-requests record for them all, to the same partition.
    [request] = [r for r in sent.records if r.topic == crawl_requests_topic.get_topic_name()]
    assert request.partition == 6 and read_crawl(request.value) == apps
    assert dispatches(metrics, SEED) == len(apps)

    # The crawler's answer for them comes back as one record too.
    await drive.record([ScheduleCommand(a, PRICED, T0 + DEDUPE) for a in apps])
    assert all(not drive.state(a).pending for a in apps)
    assert len(drive.dispatched()) == len(apps)


async def test_the_shape_before_batches_is_applied_and_garbage_is_counted(
    drive: Driver, metrics: Metrics
) -> None:
    # One ScheduleCommand Record per app, keyed by app id: what a worker of the previous
    # design left on the topic.
    old = {"app_id": APP, "op": SEED, "at": T0.isoformat(), "reason": "", "sent_at": None}
    await processed(await drive.agent.put(old, key=APP, partition=HOME))
    assert drive.dispatched() == [(APP, T0)]

    await processed(await drive.agent.put({"op": SEED, "app_ids": "nope"}, partition=HOME))
    invalid = {"source": "schedule", "reason": "invalid"}
    assert metrics.registry.get_sample_value("steam_bad_input_total", invalid) == 1
    assert drive.dispatched() == [(APP, T0)]


async def test_a_second_seed_while_pending_is_the_same_round(drive: Driver) -> None:
    await drive(SEED, T0)
    await drive(SEED, T0 + 2 * DEDUPE)  # no answer yet: the request is still queued

    assert drive.dispatched() == [(APP, T0)]
    assert drive.state().last_requested == T0


async def test_a_reseed_within_the_dedupe_window_is_ignored_after_it_dispatches(
    drive: Driver,
) -> None:
    await drive(SEED, T0)
    await drive(PRICED, T0 + DEDUPE / 4)
    await drive(SEED, T0 + DEDUPE / 2)  # within the window of the last request
    assert drive.dispatched() == [(APP, T0)]

    later = T0 + DEDUPE + timedelta(seconds=1)
    await drive(SEED, later)  # past the window: an immediate re-check
    assert drive.dispatched() == [(APP, T0), (APP, later)]
    assert drive.state().pending and drive.state().last_requested == later


async def test_a_request_that_answers_a_seed_says_so_and_the_sweep_does_not(
    drive: Driver, sent: Sent
) -> None:
    await drive(SEED, T0)
    await drive(SEED, T0 + DEDUPE / 4)  # while the request waits: coalesced into a re-check
    await drive(PRICED, T0 + DEDUPE / 2)
    recheck = drive.state().next_due
    await drive(RECHECK, recheck)  # the re-check the second seed waited for
    await drive(PRICED, recheck + DEDUPE / 4)
    sweep = drive.state().next_due
    await drive(RECHECK, sweep)  # the sweep's own re-crawl
    assert drive.dispatched() == [(APP, T0), (APP, recheck), (APP, sweep)]
    # The crawl-requests records say which apps answer a seed (their end dates are asked again).
    marked = [read_crawl_batch(r).reseeded for _, r in sent.to(crawl_requests_topic)]
    assert marked == [frozenset({APP}), frozenset({APP}), frozenset()]


async def test_priced_schedules_the_next_check_within_the_recrawl_interval(
    drive: Driver, sent: Sent
) -> None:
    await drive(SEED, T0)
    priced_at = T0 + timedelta(seconds=5)
    await drive(PRICED, priced_at)

    state = drive.state()
    assert not state.pending and state.last_result == "ok" and state.last_priced == priced_at
    # Due again one interval later, less a stable per-app offset of at most 5 %.
    assert priced_at + INTERVAL * 0.95 <= state.next_due <= priced_at + INTERVAL
    assert drive.dispatched() == [(APP, T0)]  # priced sends nothing
    assert due_index.pending == 0 and due_index.count_due(state.next_due.timestamp())["due"] == 1
    assert len(sent.to(app_state_table)) == 2


async def test_a_recheck_dispatches_only_when_the_app_is_due(
    drive: Driver, metrics: Metrics
) -> None:
    await drive(SEED, T0)
    await drive(PRICED, T0)
    due = drive.state().next_due

    await drive(RECHECK, due - timedelta(seconds=1))  # a duplicate from an earlier tick
    assert drive.dispatched() == [(APP, T0)]
    await drive(RECHECK, due)
    assert drive.dispatched() == [(APP, T0), (APP, due)]
    assert drive.state().pending
    assert dispatches(metrics, RECHECK) == 1


async def test_commands_for_an_app_nobody_seeded_write_nothing(drive: Driver, sent: Sent) -> None:
    for op in (RECHECK, PRICED, FAILED):
        await drive(op, T0, app_id=99)

    assert app_state_table.get(99) is None
    assert sent.records == []


async def test_failures_back_off_then_park_the_app_in_the_failed_state(
    drive: Driver, sent: Sent, metrics: Metrics
) -> None:
    await drive(SEED, T0)
    at = T0
    for n in range(1, settings.max_failures):
        at += timedelta(minutes=1)
        await drive(FAILED, at, reason=f"HTTP 500 #{n}")
        state = drive.state()
        assert (state.failures, state.failed, state.pending) == (n, False, False)
        assert state.next_due > at  # backed off, not dispatched again at once
        assert sent.to(app_ids_failed_topic) == []

    at += timedelta(minutes=1)
    await drive(FAILED, at, reason="HTTP 500 last")
    state = drive.state()
    assert state.failed and state.failures == settings.max_failures
    [(key, failed)] = sent.to(app_ids_failed_topic)
    assert key == APP and isinstance(failed, FailedInput) and failed.app_id == APP
    assert failed.reason == f"{settings.max_failures} failures, last: HTTP 500 last"
    assert dispatches(metrics, "failed") == 1
    assert due_index.failed == 1

    # Parked: the sweep leaves it alone; retry-failed (or a seed) brings it back.
    await drive(RECHECK, at + 2 * INTERVAL)
    assert drive.dispatched() == [(APP, T0)]
    await drive(RETRY, at + 2 * INTERVAL)
    assert drive.dispatched()[-1] == (APP, at + 2 * INTERVAL)
    state = drive.state()
    assert (state.failed, state.failures, state.pending) == (False, 0, True)
    assert due_index.failed == 0


async def test_a_dispatch_is_on_the_broker_before_the_table_marks_the_app_pending(
    drive: Driver, sent: Sent
) -> None:
    # A kill -9 may deliver the changelog write without the crawl request when the write goes
    # first; the redelivered seed would then meet a pending app and dispatch nothing.
    await drive.record([ScheduleCommand(APP, SEED, T0)], HOME)
    order = [r.topic for r in sent.records]
    request = order.index(crawl_requests_topic.get_topic_name())
    writes = [
        i for i, t in enumerate(order) if t == app_state_table.changelog_topic.get_topic_name()
    ]
    assert writes and request < min(writes), order


async def test_other_tasks_run_while_a_record_of_many_apps_is_applied(
    drive: Driver, sent: Sent
) -> None:
    """A record of 1,000 seeds holds the event loop for tens of milliseconds: the crawler and
    the sinks must get turns during it, not only after."""
    apps = [a for a in range(1, 20_000) if partition_for(a, PARTITIONS) == 6][:1000]
    log = app_state_table.changelog_topic_name
    # App-state writes done, at each turn another task got.
    async with turns(lambda: sum(1 for r in sent.records if r.topic == log)) as seen:
        await drive.record([ScheduleCommand(a, SEED, T0) for a in apps])
    assert len(drive.dispatched()) == 1000
    assert any(0 < writes < 1000 for writes in seen), "no turn for anyone mid-record"
