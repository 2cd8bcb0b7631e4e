"""The Kafka broker stopped and restarted in the middle of a sweep: the worker rides it out.

The pipeline runs on a private broker (the shared one on 9092 is never touched), which is shut
down while the second sweep is being crawled and started again ten seconds later. The worker is
never restarted: it must reconnect by itself, and the sweep must end exactly as the fake store's
ground truth says, every change stored and notified once.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.catalog import Catalog
from tests.support.checks import (
    apps_requested,
    commit_problems,
    wait_until_right,
)
from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.faults import (
    SWEEP_ENV,
    FaultRun,
    first_sweep,
    right_and_settled,
    served_at_least,
)
from tests.support.infra import PrivateKafka, wait_for
from tests.support.processes import seed_apps

OUTAGE_SECONDS = 10.0


async def test_broker_restart_mid_sweep_loses_nothing(
    tmp_path: Path, steam: FakeSteam, discord: FakeDiscord
) -> None:
    kafka = PrivateKafka(tmp_path)
    await kafka.start()
    apps = range(30_000, 32_000)
    try:
        async with FaultRun(tmp_path, steam, discord, KAFKA_BROKER=kafka.url, **SWEEP_ENV) as run:
            catalog = Catalog(steam, apps, seed=3)
            worker = run.pipeline.worker()
            await worker.start()
            assert worker.proc is not None
            pid = worker.proc.pid
            await first_sweep(run, catalog, worker)
            catalog.mutate(0.1)
            mark = len(steam.requests)
            await seed_apps(run.pipeline, apps)
            await served_at_least(steam, mark, 5)

            logged = len(worker.log().splitlines())
            await kafka.stop()
            down_at = time.monotonic()

            async def outage_over() -> bool:
                await worker.health()  # raises if the worker exited
                return time.monotonic() - down_at >= OUTAGE_SECONDS

            await wait_for("the broker outage", outage_over, timeout=OUTAGE_SECONDS + 30)
            await kafka.start()
            back = time.monotonic()
            # The outage shows in the log, in moderation (aiokafka alone wrote ~4,000 lines a
            # second while the broker was away, before steamprice.logs held its repeats back).
            outage_log = worker.log().splitlines()[logged:]
            assert any("Unable connect to node" in line for line in outage_log)
            assert len(outage_log) < 1000, f"{len(outage_log)} log lines in the outage"
            took = await right_and_settled(
                run, catalog, [worker], "every row and message after the broker restart", 120
            )
            await wait_until_right(
                "every commit at the end", lambda: commit_problems(run.pipeline), 60
            )
            print(
                f"RECOVERY broker restart: broker down {back - down_at:.1f} s; all rows and"
                f" messages right {took:.1f} s after it was back"
            )
            assert set(apps_requested(steam, mark)) == set(apps)
            # The same process throughout: it reconnected by itself.
            assert worker.proc.returncode is None and worker.proc.pid == pid
            assert await run.leaks() == []
    finally:
        await kafka.stop()
