"""Two workers in one consumer group: the work is split, and one of them dies mid-sweep.

Each worker has its own web port and data dir. While both run, the partitions are split between
them and every app is priced by exactly one of them per round. Then one is killed (SIGKILL)
during a sweep with changes pending and restarted at once: its partitions move on again. Then
it is killed for good: the survivor takes its partitions and its tables (it held standby
replicas), finishes the sweep without losing or repeating a row or a notification, and a further
round proves it has the dead worker's price state (a change is detected against it).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

from tests.support.catalog import Catalog
from tests.support.checks import (
    apps_requested,
    commit_problems,
    metric,
    partition_of,
    seconds_to_progress,
    wait_until_right,
)
from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.faults import (
    SWEEP_ENV,
    FaultRun,
    first_sweep,
    past_seed_window,
    right_and_settled,
    served_at_least,
)
from tests.support.infra import wait_for
from tests.support.processes import Worker, seed_apps

APPS = range(60_000, 61_500)


async def assigned(worker: Worker) -> int:
    health = await worker.health()
    return int(health["assigned_partitions"]) if health and health.get("consuming") else 0


async def crawled(worker: Worker) -> float:
    """Apps this worker has priced so far (its own counter)."""
    text = await worker.metrics()
    return metric(text, "steam_games_processed_total", task="crawl", status="ok") or 0.0


async def next_round(run: FaultRun, catalog: Catalog, workers: list[Worker]) -> float:
    """Seed every app again; wait until everything is right and settled; the seconds taken."""
    await past_seed_window(run)
    await seed_apps(run.pipeline, catalog.apps)
    return await right_and_settled(run, catalog, workers, "a sweep", 90)


async def test_two_workers_split_the_work_and_survive_losing_one(
    tmp_path: Path, steam: FakeSteam, discord: FakeDiscord
) -> None:
    async with FaultRun(tmp_path, steam, discord, **SWEEP_ENV) as run:
        catalog = Catalog(steam, APPS, seed=7)
        w1 = run.pipeline.worker("w1")
        await w1.start()
        alone = await assigned(w1)
        w2 = run.pipeline.worker("w2")
        await w2.start()
        assert w1.port != w2.port and w1.workdir != w2.workdir

        async def split() -> bool:
            a, b = await assigned(w1), await assigned(w2)
            return 0 < a < alone and 0 < b < alone

        await wait_for("the partitions to be split between the workers", split, timeout=60)

        # Round 1, both workers: each app asked for exactly once, by one worker or the other.
        mark = len(steam.requests)
        await first_sweep(run, catalog, w1, w2)
        assert apps_requested(steam, mark) == Counter(dict.fromkeys(APPS, 1))
        c1, c2 = await crawled(w1), await crawled(w2)
        assert c1 > 0 and c2 > 0 and c1 + c2 == len(APPS), (c1, c2)

        # Round 2: changes pending, and w2 dies a few requests into the sweep and is restarted
        # at once: its partitions move on again (the survivor's never stopped).
        catalog.mutate(0.1)
        owned = await w2.partitions()
        partitions = int(run.pipeline.env["TOPIC_PARTITIONS"])
        its_apps = [a for a in APPS if partition_of(a, partitions) in owned]
        assert owned and its_apps
        mark = len(steam.requests)
        await seed_apps(run.pipeline, APPS)
        await served_at_least(steam, mark, 4)
        await w2.stop(signal.SIGKILL)
        restarted = await seconds_to_progress(
            run.pipeline, lambda: w2.start(wait=False), apps=its_apps
        )
        await right_and_settled(
            run, catalog, [w1, w2], "every row and message after a worker's restart", 120
        )
        assert set(apps_requested(steam, mark)) == set(APPS)

        # Round 3: changes pending, and w2 dies for good a few requests into the sweep.
        catalog.mutate(0.1)
        await past_seed_window(run)
        mark = len(steam.requests)
        await seed_apps(run.pipeline, APPS)
        await served_at_least(steam, mark, 4)
        await w2.stop(signal.SIGKILL)
        killed = time.monotonic()

        async def took_over() -> bool:
            return await assigned(w1) == alone

        await wait_for("w1 to take every partition", took_over, timeout=150)
        takeover = time.monotonic() - killed
        took = await right_and_settled(
            run, catalog, [w1], "every row and message after losing a worker", 90
        )
        await wait_until_right("every commit at the end", lambda: commit_problems(run.pipeline), 60)
        assert set(apps_requested(steam, mark)) == set(APPS)

        # Round 4 on w1 alone: changes of apps w2 used to own are detected against the state
        # w2 left (were it missing, they would be taken for first prices and not recorded).
        changes = catalog.mutate(0.1)
        assert len(changes) > 50
        mark = len(steam.requests)
        await next_round(run, catalog, [w1])
        assert apps_requested(steam, mark) == Counter(dict.fromkeys(APPS, 1))
        print(
            f"PROGRESS two workers: first new MySQL row of the killed worker's apps {restarted:.1f}"
            f" s after its restart; killed for good, the survivor owned every partition"
            f" {takeover:.1f} s after the kill, all rows and messages right {took:.1f} s after it"
        )
        assert w1.proc is not None and w1.proc.returncode is None
        assert await run.leaks() == []
