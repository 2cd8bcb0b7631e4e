"""kill -9 of a real worker right after Discord accepted a message: every change posted once."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from steamprice.notify.embeds import changes_shown
from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.infra import committed_offsets, wait_for
from tests.support.notify import shown
from tests.support.prices import observations_in
from tests.support.processes import Pipeline

APPS = range(101, 113)  # twelve apps: a message of ten embeds, then the rest
# Faust reads these from the environment. A commit interval far beyond the test keeps every
# offset uncommitted when the worker dies, so the restart re-consumes (and re-detects) it all.
# Group timeouts are the defaults: the restarted worker takes its partitions back at once.
NO_COMMIT = {"BROKER_COMMIT_INTERVAL": "600", "BROKER_COMMIT_EVERY": "100000"}


class HoldingDiscord(FakeDiscord):
    """Accepts the first message, then holds its answer until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted = asyncio.Event()
        self.release = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        response = await super()._handle(request)
        if response.status == 200 and not self.accepted.is_set():
            self.accepted.set()
            await self.release.wait()
        return response


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    fake = HoldingDiscord()
    async with fake:
        yield fake
        fake.release.set()


async def committed_and_end(pipeline: Pipeline, short: str) -> tuple[int, int]:
    """Offsets the worker's consumer group committed on a topic, and the topic's end."""
    offsets = await committed_offsets(pipeline, short)
    return sum(done for done, _ in offsets.values()), sum(end for _, end in offsets.values())


async def test_kill_9_between_post_and_commit_posts_each_change_once(
    pipeline: Pipeline, steam: FakeSteam, discord: HoldingDiscord
) -> None:
    for app in APPS:
        steam.set_price(app, "us", 1999, 1999, 0)
    worker = pipeline.worker(**NO_COMMIT)
    await worker.start()
    await pipeline.cli("seed", *map(str, APPS))

    async def priced() -> bool:
        records = await pipeline.read_topic("prices-normalized")
        return sum(len(observations_in(v)) for _, v in records) >= len(APPS)

    await wait_for("first prices", priced)
    for app in APPS:
        steam.set_price(app, "us", 1999, 999, 50)  # a sale starts everywhere
    # Seeded again inside SEED_DEDUPE_SECONDS: re-checked at the end of the window.
    await pipeline.cli("seed", *map(str, APPS))

    await asyncio.wait_for(discord.accepted.wait(), 150)
    # Discord has the message; the worker has not read the answer, nor committed anything.
    await worker.stop(signal.SIGKILL)
    discord.release.set()
    held = changes_shown(discord.messages[0].embeds)
    assert held and len(discord.messages) == 1
    committed, end = await committed_and_end(pipeline, "price-changes")
    assert end >= len(APPS) and committed < end  # the restart must re-consume these changes

    for key in NO_COMMIT:  # back to the usual commit pace
        del worker.env[key]
    await worker.start(wait=False)

    async def settled() -> dict[str, int] | None:
        rows = await pipeline.query(
            "SELECT status, COUNT(*) FROM discord_deliveries GROUP BY status"
        )
        ledger = {str(s): int(n) for s, n in rows}
        done = sum(ledger.values()) == len(APPS) and set(ledger) <= {"sent", "uncertain"}
        return ledger if done else None

    ledger = await wait_for("every change settled", settled, timeout=60)

    async def reconsumed() -> bool:
        done, end = await committed_and_end(pipeline, "price-changes")
        return done == end

    await wait_for("the restarted worker to re-consume price-changes", reconsumed, timeout=60)

    assert shown(discord) == Counter({(app, "us"): 1 for app in APPS})
    # The held message's changes may or may not have been posted as far as the worker knew.
    assert ledger == {"uncertain": len(held), "sent": len(APPS) - len(held)}
    uncertain = await pipeline.query(
        "SELECT app_id FROM discord_deliveries WHERE status = 'uncertain' ORDER BY app_id"
    )
    assert [r[0] for r in uncertain] == sorted(a for a, _ in held)
    assert "marked 'uncertain'" in worker.log()
    assert "tok-integration-secret" not in worker.log()
