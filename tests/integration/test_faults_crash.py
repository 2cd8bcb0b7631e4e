"""A worker killed (SIGKILL, twice) or stopped (SIGTERM) in the middle of a sweep.

Each test prices a few thousand apps of the fake store, changes a share of the prices, starts a
second sweep and breaks the worker while it runs; then ``price_current``, ``price_changes`` and
the Discord messages are compared with the store's ground truth: nothing missing, nothing twice.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

from tests.support.catalog import Catalog, change_rows
from tests.support.checks import (
    appdetails_requests,
    apps_requested,
    commit_problems,
    crawl_commit_problems,
    metric,
    pipeline_status_while_stopping,
    seconds_to_progress,
    wait_until_right,
)
from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.faults import (
    SWEEP_BATCH,
    SWEEP_ENV,
    FaultRun,
    first_sweep,
    right_and_settled,
    served_at_least,
)
from tests.support.infra import committed_offsets, topic_values
from tests.support.processes import seed_apps


async def test_sigkill_twice_mid_sweep_loses_and_duplicates_nothing(
    tmp_path: Path, steam: FakeSteam, discord: FakeDiscord
) -> None:
    apps = range(10_000, 12_500)
    async with FaultRun(tmp_path, steam, discord, **SWEEP_ENV) as run:
        catalog = Catalog(steam, apps, seed=1)
        worker = run.pipeline.worker()
        await worker.start()
        await first_sweep(run, catalog, worker)
        assert await change_rows(run.pipeline) == Counter()  # first observations only
        assert discord.messages == []

        changes = catalog.mutate(0.1)
        assert len(changes) > 200
        mark = len(steam.requests)
        await seed_apps(run.pipeline, apps)
        # First crash a third into the sweep, the second as soon as the restarted worker has
        # stored a new price: the rest of the sweep is the second restart's work.
        await served_at_least(steam, mark, 8)
        await worker.stop(signal.SIGKILL)
        first = await seconds_to_progress(run.pipeline, lambda: worker.start(wait=False))
        await worker.stop(signal.SIGKILL)
        restarted = time.monotonic()
        second = await seconds_to_progress(run.pipeline, lambda: worker.start(wait=False))
        print(
            f"PROGRESS sigkill: first new MySQL row {first:.1f} s and {second:.1f} s after"
            " each restart"
        )

        # Whatever was still in flight must not add anything once everything is consumed.
        took = await right_and_settled(
            run, catalog, [worker], "every row and message after two crashes", 120, restarted
        )
        await wait_until_right("every commit at the end", lambda: commit_problems(run.pipeline), 60)
        print(f"RECOVERY sigkill x2: all rows and messages right {took:.1f} s after the restart")
        assert set(apps_requested(steam, mark)) == set(apps)
        assert worker.proc is not None and worker.proc.returncode is None
        assert time.monotonic() - restarted < 180
        assert await run.leaks() == []


async def test_sigterm_mid_sweep_commits_reports_stopped_and_resumes(
    tmp_path: Path, steam: FakeSteam, discord: FakeDiscord
) -> None:
    apps = range(20_000, 22_000)
    async with FaultRun(tmp_path, steam, discord, **SWEEP_ENV) as run:
        catalog = Catalog(steam, apps, seed=2)
        worker = run.pipeline.worker()
        await worker.start()
        await first_sweep(run, catalog, worker)
        catalog.mutate(0.1)
        first_round = await committed_offsets(run.pipeline, "crawl-requests")
        mark = len(steam.requests)
        await seed_apps(run.pipeline, apps)
        await served_at_least(steam, mark, 6)

        assert metric(await worker.metrics(), "steam_pipeline_status", pipeline="worker") == 1.0
        stopping = time.monotonic()
        statuses, zeros, code = await pipeline_status_while_stopping(worker, signal.SIGTERM)
        stop_seconds = time.monotonic() - stopping
        assert code == 0, worker.log()[-3000:]
        # Stopped from the start of the drain until the web server went away (a few scrapes at
        # the least, not one lucky read).
        assert statuses[-1] == 0.0, statuses
        assert zeros >= 3, zeros
        before = apps_requested(steam, mark)
        assert 0 < len(before) < len(apps)
        # Committed: every crawl-requests record (apps of one partition) answered so far, and
        # not one more: a record stays uncommitted while an app of it waits or was cut short.
        assert all(done == end for done, end in first_round.values()), first_round
        problems = crawl_commit_problems(
            first_round,
            await committed_offsets(run.pipeline, "crawl-requests"),
            await topic_values(run.pipeline, "crawl-requests"),
            set(before),
            {int(a) for a in appdetails_requests(steam)[-1].query["appids"].split(",")},
        )
        assert problems == [], problems
        restart_mark = len(steam.requests)

        restarted = time.monotonic()
        progress = await seconds_to_progress(run.pipeline, lambda: worker.start(wait=False))
        print(f"PROGRESS sigterm: first new MySQL row {progress:.1f} s after the restart")
        took = await right_and_settled(
            run, catalog, [worker], "every row and message after a graceful stop", 90, restarted
        )
        await wait_until_right("every commit at the end", lambda: commit_problems(run.pipeline), 60)
        print(
            f"RECOVERY sigterm: stopped in {stop_seconds:.1f} s ({zeros} scrapes read status 0);"
            " all rows and messages right"
            f" {took:.1f} s after the restart"
        )
        after = apps_requested(steam, restart_mark)
        # Resumed, not restarted: the apps priced before the stop are not asked for again,
        # except those of the one batch that was in flight when the signal came.
        again = set(before) & set(after)
        assert len(again) <= SWEEP_BATCH, f"{len(again)} apps priced twice in one round"
        assert set(before) | set(after) == set(apps)
        assert metric(await worker.metrics(), "steam_pipeline_status", pipeline="worker") == 1.0
        assert time.monotonic() - restarted < 150
        assert await run.leaks() == []
