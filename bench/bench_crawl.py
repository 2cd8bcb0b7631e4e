"""A full crawler sweep at Steam's real limits, time-scaled: N apps x R regions, a real worker.

Steam allows about 200 store requests per 5 minutes per IP. To finish in minutes, every duration
is divided by ``SCALE`` (default 4) and every ratio is kept: the fake store allows 200 requests
per 75 s, penalises 16/SCALE s after a 429 and bans for 600/SCALE s after 20 throttled answers
in its window; the worker paces ``STEAM_MAX_REQUESTS_PER_MINUTE`` = 40 x SCALE (its default, the
same 200 per window) and backs off ``STEAM_BACKOFF_SECONDS`` = 30/SCALE s. The store's answer
takes 0.3/SCALE s. Apps and prices come from the real 2025-08-17 catalog snapshot when present.
Why not faster: compressing time also multiplies the rest of the pipeline's work per second
(about 600 Kafka messages per store request: intake, schedule, normalize, changes, MySQL), and
on a 2-core machine shared with Kafka and MariaDB a 10x compression makes the CPU, not Steam's
limit, the bottleneck. At the real rate the worker has ample headroom.

Phase 1 (the sweep): seed N apps with ``steamprice seed --file``; the worker prices each in R
regions. Reported from the fake's request log: requests, apps priced per request, wall time
from the first request to the last (+ one pacing interval, so a perfect pacer scores exactly
the floor) against the floor ``ceil(N/100) x R / rate``, requests sent during a 429 penalty,
bans. Targets: >= 99 apps/request, wall <= 1.1x floor, 0 requests in a pause, 0 bans.

Phase 2 (over the limit): a second worker paced at twice the limit must run into 429s; it must
pause, send nothing inside a penalty, never be banned and still price everything. It uses
batches of 10 so that its 200+ requests cost little CPU; batching is phase 1's subject.

Also printed: what the one-request-per-app approach would cost for the same sweep and for the
whole catalog (requests, hours at 200 requests / 5 min).
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.fakes import FakeSteam
from tests.support.infra import wait_for
from tests.support.processes import Pipeline
from tests.support.replay import SNAPSHOTS, read_snapshot, shared_data_dir

STEAM_REQUESTS, STEAM_WINDOW = 200, 300.0  # Steam's store limit per IP
STEAM_PENALTY, STEAM_BAN = 16.0, 600.0  # recovery after a 429; ban length (steam-api.md)
STEAM_LATENCY = 0.3  # a batched appdetails answer, seconds
WORKER_RATE, WORKER_BACKOFF = 40.0, 30.0  # the worker's defaults (contract)
CATALOG = 261_000  # apps in the 2025 snapshot
REGIONS = ("us", "gb", "de", "jp", "br", "au")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def load_catalog(fake: FakeSteam, regions: tuple[str, ...], n: int) -> list[int]:
    """Price the fake store: the real snapshot in every region, else a synthetic catalog."""
    data = shared_data_dir()
    if data is not None:
        for cc in regions:
            fake.load_snapshot(data / SNAPSHOTS[0], cc=cc)
        ids = sorted(read_snapshot(data / SNAPSHOTS[0]))[:n]
        if len(ids) == n:
            return ids
    ids = list(range(10, 10 + n))
    for app_id in ids:
        for cc in regions:
            if app_id % 7 == 0:
                fake.set_no_price(app_id, cc)
            else:
                fake.set_price(app_id, cc, 1999, 1999 - app_id % 1000, 0)
    return ids


def store_log(fake: FakeSteam) -> list[Any]:
    return [r for r in fake.requests if r.path == "/api/appdetails"]


def limited_steam(scale: float, window: float) -> FakeSteam:
    """The fake store with Steam's limits, its windows divided by ``scale``."""
    return FakeSteam(
        rate_limit=(STEAM_REQUESTS, window),
        ban_after_429s=20,
        ban_seconds=STEAM_BAN / scale,
        penalty_seconds=STEAM_PENALTY / scale,
        latency=STEAM_LATENCY / scale,
    )


async def sweep(
    tmp: Path,
    fake: FakeSteam,
    apps: list[int],
    regions: tuple[str, ...],
    scale: float,
    pace: float,
    batch: int = 100,
) -> dict[str, Any]:
    """Seed ``apps`` into a fresh worker paced at ``pace`` x the limit; wait for every price."""
    rate_per_min = WORKER_RATE * scale * pace
    pipeline = Pipeline(
        tmp,
        STEAM_STORE_URL=fake.url,
        STEAM_API_URL=fake.url,
        ENABLE_DISCORD="false",
        STEAM_COUNTRIES=",".join(regions),
        STEAM_MAX_REQUESTS_PER_MINUTE=f"{rate_per_min:g}",
        STEAM_BACKOFF_SECONDS=f"{WORKER_BACKOFF / scale:g}",
        STEAM_BAN_PAUSE_SECONDS=f"{900 / scale:g}",
        STEAM_BATCH_WAIT_SECONDS="2",
        STEAM_BATCH_SIZE=str(batch),
        TOPIC_PARTITIONS="8",
        SINK_BATCH_SIZE="2000",
    )
    worker = pipeline.worker()
    try:
        await worker.start()
        fake.reset_stats()
        ids = tmp / "ids.txt"
        ids.write_text("\n".join(map(str, apps)) + "\n")
        started = time.monotonic()
        out = await pipeline.cli("seed", "--file", str(ids))
        print(f"  {out.strip().splitlines()[-1]} in {time.monotonic() - started:.1f} s", flush=True)
        want = len(apps) * len(regions)
        shown = [time.monotonic()]

        async def all_rows() -> bool:
            rows = await pipeline.query("SELECT COUNT(*) FROM price_current")
            got = int(rows[0][0]) if rows else 0
            if time.monotonic() - shown[0] > 15:
                shown[0] = time.monotonic()
                print(
                    f"  {got:,}/{want:,} prices stored, {len(store_log(fake))} requests, "
                    f"{time.monotonic() - started:.0f} s",
                    flush=True,
                )
            return got >= want

        await wait_for("every app priced in every region", all_rows, timeout=1800, every=1.0)
        end_to_end = time.monotonic() - started
        text = await worker.metrics()
    finally:
        await pipeline.close()
    log = store_log(fake)
    served = [r for r in log if r.status == 200]
    first, last = log[0].time, log[-1].time
    gaps = sorted(b.time - a.time for a, b in itertools.pairwise(log))
    return {
        "gap_median_s": gaps[len(gaps) // 2] if gaps else 0.0,
        "gap_min_s": gaps[0] if gaps else 0.0,
        "gaps_over_1_5x": sum(g > 1.5 * 60 / rate_per_min for g in gaps),
        "requests": len(log),
        "served": len(served),
        "throttled_429": sum(r.status == 429 for r in log),
        "banned_403": sum(r.status == 403 for r in log),
        "app_regions_answered": sum(r.n_appids for r in served),
        "first_to_last_s": last - first,
        "end_to_end_s": end_to_end,
        "requests_during_penalty": fake.requests_during_penalty,
        "banned_at_end": fake.is_banned(),
        "pause_metric": next(
            (
                line.rsplit(" ", 1)[1]
                for line in text.splitlines()
                if line.startswith(
                    'steam_rate_limit_pauses_total{endpoint="appdetails",reason="rate_limited"}'
                )
            ),
            "0",
        ),
    }


async def main() -> dict[str, Any]:
    scale = float(os.environ.get("BENCH_CRAWL_SCALE", "4"))
    n = env_int("BENCH_CRAWL_APPS", 16_000)
    r = env_int("BENCH_CRAWL_REGIONS", 2)
    n_over = env_int("BENCH_CRAWL_OVERDRIVE_APPS", 2_300)
    regions = REGIONS[:r]
    window = STEAM_WINDOW / scale
    rate = STEAM_REQUESTS / window  # requests per second the fake allows
    print(
        f"Time scaled 1/{scale:g}: the fake store allows {STEAM_REQUESTS} requests per "
        f"{window:g} s ({rate:.2f}/s; Steam: {STEAM_REQUESTS} per {STEAM_WINDOW:g} s), "
        f"429 penalty {STEAM_PENALTY / scale:g} s, ban after 20 throttled answers for "
        f"{STEAM_BAN / scale:g} s, answers in {STEAM_LATENCY / scale * 1000:.0f} ms; the worker "
        f"paces {WORKER_RATE * scale:g}/min (= its default {WORKER_RATE:g}/min x {scale:g}) and "
        f"backs off {WORKER_BACKOFF / scale:g} s."
    )
    result: dict[str, Any] = {"scale": scale, "apps": n, "regions": list(regions)}
    with tempfile.TemporaryDirectory(prefix="bench-crawl-") as tmp:
        async with limited_steam(scale, window) as fake:
            apps = load_catalog(fake, regions, max(n, n_over))
            print(f"\nPhase 1: sweep of {n:,} apps x {r} regions at the limit", flush=True)
            s = await sweep(
                Path(tempfile.mkdtemp(dir=tmp)), fake, apps[:n], regions, scale, pace=1.0
            )
        floor = math.ceil(n / 100) * r / rate
        wall = s["first_to_last_s"] + 1 / rate
        per_request = s["app_regions_answered"] / s["requests"]
        naive = n * r
        naive_hours = naive / STEAM_REQUESTS * STEAM_WINDOW / 3600
        catalog_batched = math.ceil(CATALOG / 100) * r
        catalog_naive = CATALOG * r
        print(
            f"  requests: {s['requests']:,} ({s['served']:,} answered 200, "
            f"{s['throttled_429']} x 429, {s['banned_403']} x 403)\n"
            f"  apps priced per request: {per_request:.2f} (target >= 99)\n"
            f"  gaps between requests: min {s['gap_min_s']:.3f} s, median {s['gap_median_s']:.3f} s "
            f"(pacing interval {1 / rate:.3f} s), {s['gaps_over_1_5x']} gaps over 1.5x it\n"
            f"  wall time, first request to last: {wall:.1f} s vs floor ceil({n:,}/100) x {r} / "
            f"{rate:.2f}/s = {floor:.1f} s -> {wall / floor:.3f}x (target <= 1.1x); "
            f"unscaled: {wall * scale / 60:.1f} min vs {floor * scale / 60:.1f} min\n"
            f"  end to end, seed to the last price in MySQL: {s['end_to_end_s']:.1f} s\n"
            f"  requests sent during a 429 penalty: {s['requests_during_penalty']} (target 0); "
            f"bans: {s['banned_403']} (target 0)\n"
            f"  one request per app instead: {naive:,} requests = {naive_hours:.1f} h at "
            f"{STEAM_REQUESTS}/5 min ({naive / s['requests']:.0f}x the requests); the whole "
            f"{CATALOG:,}-app catalog in {r} regions: {catalog_naive:,} requests = "
            f"{catalog_naive / STEAM_REQUESTS * STEAM_WINDOW / 3600:.1f} h vs {catalog_batched:,} "
            f"batched = {catalog_batched / STEAM_REQUESTS * STEAM_WINDOW / 3600:.1f} h",
            flush=True,
        )
        result.update(
            requests=s["requests"],
            apps_per_request=round(per_request, 2),
            wall_s=round(wall, 1),
            floor_s=round(floor, 1),
            wall_over_floor=round(wall / floor, 3),
            end_to_end_s=round(s["end_to_end_s"], 1),
            requests_during_429_pause=s["requests_during_penalty"],
            bans=s["banned_403"],
            one_per_app_requests=naive,
            one_per_app_hours=round(naive_hours, 2),
            targets_met=per_request >= 99
            and wall / floor <= 1.1
            and s["requests_during_penalty"] == 0
            and s["banned_403"] == 0,
        )

        async with limited_steam(scale, window) as fake:
            apps = load_catalog(fake, ("us",), n_over)
            print(
                f"\nPhase 2: {n_over:,} apps x 1 region in batches of 10, worker paced at 2x "
                "the limit",
                flush=True,
            )
            o = await sweep(
                Path(tempfile.mkdtemp(dir=tmp)), fake, apps, ("us",), scale, pace=2.0, batch=10
            )
        over_floor = math.ceil(n_over / 10) / rate
        print(
            f"  requests: {o['requests']:,} ({o['throttled_429']} x 429 -> "
            f"{o['pause_metric']} pauses), requests sent during a 429 penalty: "
            f"{o['requests_during_penalty']} (target 0), bans: {o['banned_403']} (target 0), "
            f"every app priced; wall {o['first_to_last_s']:.1f} s vs {over_floor:.1f} s at the limit",
            flush=True,
        )
        result["overdriven"] = {
            "requests": o["requests"],
            "throttled_429": o["throttled_429"],
            "requests_during_429_pause": o["requests_during_penalty"],
            "bans": o["banned_403"],
            "wall_s": round(o["first_to_last_s"], 1),
        }
        result["targets_met"] = (
            result["targets_met"] and o["requests_during_penalty"] == 0 and o["banned_403"] == 0
        )
    print(f"\ntargets met: {result['targets_met']}")
    return result
