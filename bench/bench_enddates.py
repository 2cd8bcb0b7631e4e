"""GetItems calls per 1,000 discounted apps, and what end dates add to a sweep (client level).

The fake store serves the real 2025-08-17 catalog (when present; else a synthetic one with the
same discounted share) and the store client asks ``IStoreBrowseService/GetItems`` for the end of
every discounted app's discount, exactly as the worker does: batches packed to the URL limit,
the answers checked and matched, one outcome per app. The client is unpaced here so that its own
cost shows; the sweep figures at the production paces are computed from the measured counts:

* calls per 1,000 discounted apps (and the apps per call, against Valve's 250);
* the client's CPU per call and per app (build, send, parse, match, rules), with the fake
  answering in the same process, so an upper bound;
* per region and sweep: the store's ``appdetails`` requests (ceil(apps/100) at
  ``STEAM_MAX_REQUESTS_PER_MINUTE`` = 40) against GetItems' (at its own 20 a minute, on another
  host): GetItems adds requests on a separate budget, so it does not lengthen the sweep as long
  as it keeps up, which the figures check.
"""

from __future__ import annotations

import math
import os
import random
import time
from typing import Any

from steamprice.enddates import KNOWN, Offer, discounted_offer
from steamprice.metrics import Metrics
from steamprice.settings import Settings
from steamprice.store_client import StoreClient
from tests.support.fakes import FakeSteam
from tests.support.replay import SNAPSHOTS, read_snapshot, shared_data_dir

STORE_RATE, GETITEMS_RATE = 40.0, 20.0  # requests per minute: the worker's defaults
SYNTHETIC_APPS, SYNTHETIC_DISCOUNTED = 261_000, 0.12


def catalog(fake: FakeSteam) -> tuple[int, list[Offer], str]:
    """Load the catalog into the fake's ``us`` region; the apps and the discounted offers."""
    data = shared_data_dir()
    if data is not None:
        fake.load_snapshot(data / SNAPSHOTS[0], cc="us")
        snapshot = read_snapshot(data / SNAPSHOTS[0])
        offers = [
            o
            for app_id, (_, initial, final, discount) in sorted(snapshot.items())
            if (o := discounted_offer(app_id, initial, final, discount)) is not None
        ]
        return len(snapshot), offers, f"real catalog {SNAPSHOTS[0]}"
    rng = random.Random(7)
    offers = []
    for app_id in range(10, 10 + SYNTHETIC_APPS):
        if rng.random() < SYNTHETIC_DISCOUNTED:
            fake.set_price(app_id, "us", 1999, 999, 50)
            offers.append(Offer(app_id, 1999, 999))
        else:
            fake.set_price(app_id, "us", 1999, 1999, 0)
    return SYNTHETIC_APPS, offers, "synthetic catalog"


async def main() -> dict[str, Any]:
    limit = int(os.environ.get("BENCH_ENDDATES_APPS", "0"))
    async with FakeSteam(rate_limit=None, getitems_rate_limit=None) as fake:
        apps, offers, source = catalog(fake)
        if limit:
            offers = offers[:limit]
        print(
            f"{source}: {apps:,} apps, {len(offers):,} discounted in us ({len(offers) / apps:.1%})",
            flush=True,
        )
        settings = Settings(
            steam_store_url=fake.url,
            steam_api_url=fake.url,
            steam_getitems_max_requests_per_minute=1e6,  # unpaced: measure the client
        )
        client = StoreClient(settings, Metrics.create())
        await client.start()
        try:
            fake.reset_stats()
            wall0, cpu0 = time.monotonic(), time.process_time()
            results = await client.discount_ends(offers, "us")
            wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        finally:
            await client.stop()
        calls = [r for r in fake.requests if r.path.startswith("/IStoreBrowseService/")]
    known = sum(r.outcome == KNOWN for r in results)
    n = len(offers)
    per_1000 = len(calls) / n * 1000
    per_call = sum(r.n_appids for r in calls) / len(calls)
    store_requests = math.ceil(apps / 100)
    store_minutes = store_requests / STORE_RATE
    getitems_minutes = len(calls) / GETITEMS_RATE
    print(
        f"  GetItems calls: {len(calls):,} for {n:,} discounted apps = {per_1000:.2f} per 1,000 "
        f"({per_call:.1f} apps per call; Valve batches 250); statuses "
        f"{sorted({r.status for r in calls})}, {known:,} end dates known\n"
        f"  client cost (fake in the same process, an upper bound): {cpu:.2f} s CPU, "
        f"{wall:.2f} s wall = {cpu / len(calls) * 1000:.1f} ms CPU per call, "
        f"{cpu / n * 1e6:.0f} us per app\n"
        f"  per region and sweep of {apps:,} apps: appdetails {store_requests:,} requests = "
        f"{store_minutes:.1f} min at {STORE_RATE:g}/min; GetItems +{len(calls):,} requests "
        f"({len(calls) / store_requests:.1%} more requests, on another host) = "
        f"{getitems_minutes:.1f} min at {GETITEMS_RATE:g}/min, "
        f"{getitems_minutes / store_minutes:.1%} of the sweep's time: it keeps up, the sweep is "
        f"not lengthened",
        flush=True,
    )
    return {
        "source": source,
        "apps": apps,
        "discounted": n,
        "calls": len(calls),
        "calls_per_1000_discounted": round(per_1000, 2),
        "apps_per_call": round(per_call, 1),
        "known": known,
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_call": round(cpu / len(calls) * 1000, 1),
        "store_requests_per_sweep": store_requests,
        "store_minutes_per_sweep": round(store_minutes, 1),
        "getitems_minutes_per_sweep": round(getitems_minutes, 1),
    }
