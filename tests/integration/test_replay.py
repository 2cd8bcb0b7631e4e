"""Real data: replaying two real daily snapshots through the real pipeline gives exactly the
changes the two CSV files imply (computed independently of the pipeline's code) and leaves each
app's last price in price_current.

Everyday: a sample (every changed app, a few thousand unchanged ones and some present on one day
only). Slow tier: the whole catalog, ~261k apps a day, through every hop.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.fakes import FakeSteam
from tests.support.processes import Pipeline
from tests.support.replay import (
    REPLAY_WORKER_ENV,
    SNAPSHOTS,
    current_prices,
    read_snapshot,
    replay,
    replay_problems,
    sample_apps,
)
from tests.support.shared import require_shared_data

UNCHANGED_SAMPLE = 3000


async def _replay(
    pipeline: Pipeline, steam: FakeSteam, workers: int, sample: int | None = None
) -> None:
    data = require_shared_data(*SNAPSHOTS)
    paths = [data / name for name in SNAPSHOTS]
    days = [read_snapshot(path) for path in paths]
    apps = sample_apps(days, sample) if sample is not None else None
    steam.rate_limit = None
    started = [pipeline.worker(f"w{n}", **REPLAY_WORKER_ENV) for n in range(1, workers + 1)]
    for worker in started:
        await worker.start(wait=False)
    for worker in started:
        await worker.wait_consuming()

    result = await replay(pipeline, steam, paths, apps=apps)

    problems = replay_problems(days, result, await current_prices(pipeline), apps)
    assert not problems, problems
    assert 500 < len(result.changes) < 1000  # the files hold about 700 changes
    print("kinds:", Counter(r[2] for r in result.changes))


async def test_a_sample_of_two_real_days_replays_exactly(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    await _replay(pipeline, steam, workers=1, sample=UNCHANGED_SAMPLE)


# Two passes over ~261k apps through every hop of the pipeline: minutes, not seconds. Two
# workers share the partitions (one per core): the catalog is priced twice as fast.
@pytest.mark.slow
@pytest.mark.timeout(3600)
async def test_replaying_two_real_days_yields_exactly_their_changes(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    await _replay(pipeline, steam, workers=2)
