"""From ``steamprice seed`` of 50,000 apps in 2 regions to every row in price_current, both designs.

One worker; the fake store (in this process) answers as fast as it can (no rate limit, no
latency) with the real 2025-08-17 prices in both regions; the worker is paced far above it. The
clock runs from the seed command to the last of the 100,000 rows of ``price_current``. Both
designs run in the same process one after the other: **batches** (this tree) and
**per-record** (the previous design, checked out of git as ``python -m bench pipeline`` does).
Goal: >= 3,000 observations/s (about 600 before batches). ``BENCH_APPS=N`` seeds N apps.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.bench_pipeline import (
    BASELINE_REF,
    PRODUCTION,
    checkout,
    cpu_seconds,
    discard_state,
    peak_rss_mb,
    remove_checkout,
)
from bench.pyspy import Profile
from tests.support.fakes import FakeSteam
from tests.support.infra import wait_for
from tests.support.processes import Pipeline
from tests.support.replay import SNAPSHOTS, read_snapshot, shared_data_dir

REGIONS = ("us", "de")
GOAL = 3000.0


async def run(name: str, fake: FakeSteam, ids: list[int], env: dict[str, str]) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-endtoend-{name}-"))
    pipeline = Pipeline(
        tmp,
        STEAM_STORE_URL=fake.url,
        STEAM_API_URL=fake.url,
        ENABLE_DISCORD="false",
        **PRODUCTION,
        STEAM_COUNTRIES=",".join(REGIONS),
        STEAM_MAX_REQUESTS_PER_MINUTE="1000000",
        RECRAWL_INTERVAL_SECONDS="86400",
        **env,
    )
    worker = pipeline.worker("w1")
    want = len(ids) * len(REGIONS)
    try:
        await worker.start()
        assert worker.proc is not None
        seed_file = tmp / "ids.txt"
        seed_file.write_text("\n".join(map(str, ids)) + "\n")
        cpu_before = cpu_seconds(worker.proc.pid)
        started = time.monotonic()
        last = [started]

        async def every_row() -> bool:
            rows = await pipeline.query("SELECT COUNT(*) FROM price_current")
            got = int(rows[0][0]) if rows else 0
            if time.monotonic() - last[0] > 15:
                last[0] = time.monotonic()
                print(f"    {got:,}/{want:,} after {time.monotonic() - started:.0f} s", flush=True)
            return got >= want

        async with Profile(worker.proc.pid, f"endtoend-{name}"):
            await pipeline.cli("seed", "--file", str(seed_file))
            await wait_for(f"{name}: every row", every_row, timeout=7200, every=0.5)
            seconds = time.monotonic() - started
            cpu = cpu_seconds(worker.proc.pid) - cpu_before
        figures = {
            "observations_per_second": want / seconds,
            "seconds": seconds,
            "worker_cpu_us_per_observation": cpu / want * 1e6,
            "peak_rss_mb": peak_rss_mb(worker.proc.pid),
        }
        print(
            f"  {name}: {want:,} observations in {seconds:.1f} s = {want / seconds:,.0f}/s, "
            f"worker CPU {cpu / want * 1e6:,.0f} us per observation"
        )
        return figures
    finally:
        print(f"  worker log: {worker.log_path}")
        await pipeline.close()
        discard_state(pipeline)


async def main() -> dict[str, object]:
    data = shared_data_dir()
    if data is None:
        print("skipped: set STEAMPRICE_SHARED_DATA to the folder with " + ", ".join(SNAPSHOTS))
        return {"skipped": True}
    n = int(os.environ.get("BENCH_APPS", "50000"))
    ids = sorted(read_snapshot(data / SNAPSHOTS[0]))[:n]
    wanted = os.environ.get("BENCH_DESIGNS", "batches,per-record").split(",")
    results: dict[str, dict[str, float]] = {}
    async with FakeSteam(rate_limit=None, ban_after_429s=None) as fake:
        for cc in REGIONS:
            fake.load_snapshot(data / SNAPSHOTS[0], cc=cc)
        if "batches" in wanted:
            results["batches"] = await run("batches", fake, ids, {})
        if "per-record" in wanted:
            baseline = checkout(os.environ.get("BENCH_BASELINE_REF", BASELINE_REF))
            try:
                env = {"PYTHONPATH": str(baseline)}
                results["per-record"] = await run("per-record", fake, ids, env)
            finally:
                remove_checkout(baseline)
    print(f"{'':34}" + "".join(f"{name:>14}" for name in results) + f"{'goal':>10}")
    for label, key, goal in (
        ("observations/s, seed to rows", "observations_per_second", f">= {GOAL:,.0f}"),
        ("worker CPU us/observation", "worker_cpu_us_per_observation", ""),
        ("peak RSS MB", "peak_rss_mb", ""),
    ):
        cells = "".join(f"{r[key]:>14,.0f}" for r in results.values())
        print(f"{label:34}{cells}{goal:>10}")
    return {k: {m: round(v, 1) for m, v in r.items()} for k, r in results.items()}
