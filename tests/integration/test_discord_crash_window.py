"""A sender killed (SIGKILL) right after a 429: its replacement waits out Discord's window.

Real worker processes, the real MariaDB and broker, production defaults (session timeouts and
every Discord setting). The fake's channel takes 2 messages per 30 s, fewer than the notifier
paces to (30 per minute, Discord's usual limit), so the third message gets a 429 (scope shared)
for the rest of the 30 s: long enough for a replacement worker to start and become the sender
inside the window. Before windows were stored next to the ledger, it posted at once.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.infra import wait_for
from tests.support.notify import shown
from tests.support.processes import Pipeline, Worker

APPS = range(201, 226)  # 25 apps: at least three messages of at most ten embeds
WINDOW = 30.0
HOOK = "4242"  # the pipeline fixture's webhook
SENDER = "This worker is now the Discord sender"


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(channel_limit=(2, WINDOW)) as fake:
        yield fake


async def ledger(pipeline: Pipeline) -> dict[str, int]:
    rows = await pipeline.query("SELECT status, COUNT(*) FROM discord_deliveries GROUP BY status")
    return {str(s): int(n) for s, n in rows}


async def sales_queued(pipeline: Pipeline, steam: FakeSteam, worker: Worker) -> None:
    """Price every app, then start a sale everywhere: one change per app, queued for Discord."""
    for app in APPS:
        steam.set_price(app, "us", 1999, 1999, 0)
    await worker.start()
    await pipeline.cli("seed", *map(str, APPS))

    async def priced() -> bool:
        rows = await pipeline.query("SELECT COUNT(*) FROM price_current")
        return bool(rows) and rows[0][0] == len(APPS)

    await wait_for("first prices", priced, timeout=120)
    for app in APPS:
        steam.set_price(app, "us", 1999, 999, 50)
    await pipeline.cli("seed", *map(str, APPS))


async def test_a_replacement_sender_never_calls_inside_the_window_of_a_killed_senders_429(
    pipeline: Pipeline, steam: FakeSteam, discord: FakeDiscord
) -> None:
    # Not a timeout: a re-seed inside SEED_DEDUPE_SECONDS waits for the end of the window (one
    # re-check), and this test needs the second observation at once.
    worker = pipeline.worker(SEED_DEDUPE_SECONDS="0")
    await sales_queued(pipeline, steam, worker)

    async def took_the_429() -> bool:
        now = await ledger(pipeline)
        # Every change queued, and the refused message's rows back in the queue (the same
        # commit as its window): the moment the issue describes, a worker killed "a moment later".
        return discord.count_429 >= 1 and sum(now.values()) == len(APPS) and "sending" not in now

    await wait_for("a 429 taken in by the sender", took_the_429, timeout=120, every=0.05)
    await worker.stop(signal.SIGKILL)
    killed = time.monotonic()
    window_end = discord.retry_window_end(HOOK)
    assert [r.reason for r in discord.requests if r.status == 429] == ["shared"]
    assert window_end - killed > 10, "too little of the window left for the test to mean much"
    mark = len(discord.requests)

    await worker.start(wait=False)

    async def replaced() -> bool:
        return worker.log().count(SENDER) == 2

    await wait_for("the replacement to become the sender", replaced, timeout=60, every=0.1)
    became_sender = time.monotonic()

    async def all_sent() -> dict[str, int] | None:
        now = await ledger(pipeline)
        return now if now.get("sent") == len(APPS) else None

    assert await wait_for("every change posted", all_sent, timeout=240) == {"sent": len(APPS)}
    # The replacement was ready well inside the window, and still sent nothing before its end.
    assert became_sender < window_end - 1
    after = discord.requests[mark:]
    assert after and after[0].time >= window_end, (after[0].time - window_end, worker.log()[-3000:])
    assert discord.requests_in_retry_window == 0
    assert shown(discord) == Counter({(app, "us"): 1 for app in APPS})
    assert "wait (shared) from before this sender took over" in worker.log()
    print(
        f"WINDOW: killed {window_end - killed:.1f} s before the window's end; the replacement was"
        f" the sender {window_end - became_sender:.1f} s before it and first called Discord"
        f" {after[0].time - window_end:.2f} s after it"
    )
