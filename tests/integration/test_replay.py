"""Real data: replaying two real daily snapshots of the whole catalog gives exactly the changes
that the two CSV files imply (computed independently of the pipeline's code)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.fakes import FakeSteam
from tests.support.processes import Pipeline
from tests.support.replay import SNAPSHOTS, expected_changes, read_snapshot, replay
from tests.support.shared import require_shared_data


# Two passes over ~261k apps through every hop of the pipeline: minutes, not seconds.
@pytest.mark.timeout(3600)
async def test_replaying_two_real_days_yields_exactly_their_changes(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    data = require_shared_data(*SNAPSHOTS)
    day1, day2 = (data / name for name in SNAPSHOTS)
    expected = expected_changes(read_snapshot(day1), read_snapshot(day2))
    assert 500 < len(expected) < 1000  # the files hold about 700 changes

    steam.rate_limit = None
    # Two workers share the partitions (one per core): the catalog is priced twice as fast.
    workers = [
        pipeline.worker(
            name,
            STEAM_COUNTRIES="us",
            SEED_DEDUPE_SECONDS="0",
            STEAM_MAX_REQUESTS_PER_MINUTE="1000000",
            RECRAWL_INTERVAL_SECONDS="86400",
            SINK_BATCH_SIZE="2000",
            ENABLE_DISCORD="false",
        )
        for name in ("w1", "w2")
    ]
    for worker in workers:
        await worker.start(wait=False)
    for worker in workers:
        await worker.wait_consuming()
    result = await replay(pipeline, steam, [day1, day2])

    got = {row[0]: row for row in result.changes}
    assert len(result.changes) == len(got)  # one change per app: nothing duplicated
    assert set(got) == set(expected), (
        f"missing {sorted(set(expected) - set(got))[:20]}, unexpected {sorted(set(got) - set(expected))[:20]}"
    )
    for app_id, (old, new) in expected.items():
        row = got[app_id]
        assert row[1] == "us"
        assert (row[3], row[4], row[5]) == old[1:], app_id
        assert (row[6], row[7], row[8]) == new[1:], app_id
    print("kinds:", Counter(r[2] for r in result.changes))
