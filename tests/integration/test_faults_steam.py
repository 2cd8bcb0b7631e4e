"""Steam misbehaving at random: 429, 403, 5xx, HTML, truncated and stalled answers, broken entries.

The fake store fails a share of the price requests (and of the app-list polls that use the Web
API key) at random; a few apps carry an entry that breaks the JSON of every batch they are in.
Every other app must still be priced, no request may arrive while a 429 pause runs, the broken
apps must land on ``app-ids-failed`` with their reason, and ``steamprice retry-failed`` must
bring them back once the store serves them again.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.catalog import Catalog, current_rows
from tests.support.checks import metric, mismatches, wait_until_right
from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.faults import FaultRun
from tests.support.infra import wait_for
from tests.support.processes import seed_apps

APPS = range(40_000, 41_000)
BROKEN = (40_123, 40_456, 40_789)  # one per batch: bisecting isolates each
# What app-ids-failed says about an app parked after one failed fetch in region us.
REASON = re.compile(
    r"1 failures, last: us: (entry breaks the JSON answer \(malformed: .+\)"
    r"|malformed: .+|server: HTTP 5\d\d|timeout: .+)"
)
PENALTY = 1.0  # how long after a 429 the fake counts a request as one sent during the pause
ENV = {
    "STEAM_BATCH_SIZE": "100",
    "STEAM_MAX_REQUESTS_PER_MINUTE": "1200",
    # Pauses and retries scaled down from minutes to about a second; the first 429 pause is
    # still longer than the store's penalty, which is the point.
    "STEAM_BACKOFF_SECONDS": str(PENALTY),
    "STEAM_BAN_PAUSE_SECONDS": "1",
    "STEAM_RETRY_BASE_SECONDS": "0.1",
    "STEAM_REQUEST_TIMEOUT_SECONDS": "1",
    # One failed fetch parks an app (the default 5 would only retry it later).
    "MAX_FAILURES": "1",
    # The app-list poller runs too, with the Web API key in its URLs, against faults of its own.
    "DISCOVERY_INTERVAL_SECONDS": "2",
}


@pytest.fixture
async def steam() -> AsyncIterator[FakeSteam]:
    # timeout_delay beyond STEAM_REQUEST_TIMEOUT_SECONDS: a "timeout" fault is a stalled answer.
    async with FakeSteam(rate_limit=None, penalty_seconds=PENALTY, timeout_delay=2.0) as fake:
        yield fake


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


def failed_inputs(messages: list[tuple[bytes | None, bytes | None]]) -> dict[int, list[str]]:
    """Reasons on app-ids-failed per app (messages about an app, not about raw input)."""
    out: dict[int, list[str]] = {}
    for _, value in messages:
        doc: dict[str, Any] = json.loads(value or b"{}")
        if doc.get("app_id") is not None:
            out.setdefault(int(doc["app_id"]), []).append(str(doc["reason"]))
    return out


async def test_random_steam_faults_every_app_priced_failures_retried(
    tmp_path: Path, steam: FakeSteam, discord: FakeDiscord
) -> None:
    async with FaultRun(tmp_path, steam, discord, **ENV) as run:
        catalog = Catalog(steam, APPS, seed=4)
        for app in BROKEN:
            steam.set_raw_entry(app, None, '{"success":true,"data":{"price_overview":')
        # One of each fault for certain, then a random fifth of the requests.
        for kind in ("429", "403", "502", "truncated", "timeout"):
            steam.fail_next(1, kind)
        steam.chaos(0.2, kinds=("429", "403", "500", "502", "html", "truncated", "timeout"))
        for kind in ("502", "timeout"):
            steam.fail_next(1, kind, endpoint="applist")
        steam.chaos(0.3, kinds=("502", "truncated", "timeout"), endpoint="applist")
        worker = run.pipeline.worker()
        await worker.start()
        started = time.monotonic()
        await seed_apps(run.pipeline, APPS)

        failed: dict[int, list[str]] = {}

        async def all_answered() -> bool:
            nonlocal failed
            failed = failed_inputs(await run.pipeline.read_topic("app-ids-failed"))
            priced = {app for app, _ in await current_rows(run.pipeline)}
            return priced | set(failed) == set(APPS)

        await wait_for("every app priced or parked as failed", all_answered, timeout=150)
        first_pass = time.monotonic() - started
        # The broken apps (and any whose every attempt met a fault) are parked, each once, with
        # the reason (the last fault: the random ones may hide the broken entry); the faults did
        # happen, or this test would prove nothing.
        assert set(BROKEN) <= set(failed)
        for reasons in failed.values():
            assert len(reasons) == 1 and REASON.fullmatch(reasons[0]), reasons
        faults = {r.fault for r in steam.requests if r.path.startswith("/api/appdetails")}
        assert {"429", "403", "502", "truncated", "timeout"} <= faults
        assert steam.count_429 > 0 and steam.requests_during_penalty == 0
        applist_faults = {r.fault for r in steam.requests if "GetAppList" in r.path}
        assert {"502", "timeout"} <= applist_faults

        async def failed_gauge() -> bool:
            text = await worker.metrics()
            return metric(text, "steam_queue_size", queue="failed") == len(failed)

        await wait_for("the failed-apps gauge", failed_gauge)

        for app in BROKEN:  # the store serves them properly again
            steam.set_raw_entry(app, None, None)
        retried_at = time.monotonic()
        out = await run.cli("retry-failed")
        assert f"Re-enqueued {len(failed)} failed apps" in out

        async def truth() -> str:
            return mismatches(catalog.truth, await current_rows(run.pipeline))

        took = await wait_until_right("every app priced after retry-failed", truth, timeout=90)
        print(
            f"RECOVERY steam faults: {len(failed)} apps parked after {first_pass:.1f} s;"
            f" all {len(APPS)} priced {took:.1f} s after retry-failed"
            f" ({time.monotonic() - retried_at:.1f} s with the command)"
        )
        assert steam.requests_during_penalty == 0
        assert worker.proc is not None and worker.proc.returncode is None
        assert await run.leaks() == []
