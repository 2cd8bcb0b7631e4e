"""Real snapshots through crawl -> normalize -> detect -> MySQL on one worker (issue 4)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.bench_pipeline import discard_state
from tests.support.fakes import FakeSteam
from tests.support.processes import Pipeline
from tests.support.replay import SNAPSHOTS, expected_changes, read_snapshot, replay, shared_data_dir


async def main() -> dict[str, object]:
    data = shared_data_dir()
    if data is None:
        print("skipped: set STEAMPRICE_SHARED_DATA to the folder with " + ", ".join(SNAPSHOTS))
        return {"skipped": True}
    paths = [data / name for name in SNAPSHOTS]
    if os.environ.get("BENCH_ONE_DAY"):
        paths = paths[:1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    async with FakeSteam(rate_limit=None) as steam:
        pipeline = Pipeline(tmp, STEAM_STORE_URL=steam.url, ENABLE_DISCORD="false")
        worker = pipeline.worker(
            SEED_DEDUPE_SECONDS="0",
            STEAM_MAX_REQUESTS_PER_MINUTE="1000000",
            RECRAWL_INTERVAL_SECONDS="86400",
            SINK_BATCH_SIZE="2000",
        )
        try:
            await worker.start()
            result = await replay(pipeline, steam, paths)
        finally:
            print(f"worker log: {worker.log_path}")
            await pipeline.close()
            discard_state(pipeline)
    out: dict[str, object] = {"passes": [p.__dict__ for p in result.passes]}
    if len(paths) == 2:
        expected = expected_changes(*(read_snapshot(p) for p in paths))
        out["changes"] = len(result.changes)
        out["expected_changes"] = len(expected)
    print(out)
    return out
