"""The fault suite's runs: every secret set and grepped for, sweeps to interrupt, their fakes."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from steamprice.settings import Settings
from tests.support.catalog import Catalog
from tests.support.checks import (
    Quiet,
    leaks,
    store_requests,
    sweep_problems,
    wait_until_right,
    web_texts,
)
from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.infra import MySQLUser, wait_for
from tests.support.processes import Pipeline, Worker, seed_apps

T = TypeVar("T")


class FaultRun:
    """A pipeline for a fault test, with every secret set and grepped for.

    The database is reached as a private user with a password (:class:`MySQLUser`), the Steam
    Web API key is the fake's, the webhook carries a token: :meth:`leaks` looks for all three in
    every worker's log (killed ones too), every page the live workers serve, the output of the
    commands run through :meth:`cli` and the app-ids-failed topic.
    """

    def __init__(self, tmp: Path, steam: Any, discord: Any, **env: str) -> None:
        self.steam = steam
        self.discord = discord
        self.steam_key = f"key-{uuid.uuid4().hex}"
        self.webhook_token = f"tok-{uuid.uuid4().hex}"
        steam.api_key = self.steam_key
        self.pipeline = Pipeline(
            tmp,
            STEAM_STORE_URL=steam.url,
            STEAM_API_URL=steam.url,
            STEAMSPY_URL=f"{steam.url}/api.php",
            STEAM_API_KEY=self.steam_key,
            DISCORD_WEBHOOK_URL=discord.webhook_url("8008", self.webhook_token),
            **env,
        )
        self.user = MySQLUser(self.pipeline.db)
        self.pipeline.env.update(self.user.env)
        self.outputs: list[str] = []

    @property
    def secrets(self) -> list[str]:
        return [self.steam_key, self.webhook_token, self.user.password]

    async def __aenter__(self) -> FaultRun:
        await self.user.create()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.pipeline.close()
        finally:
            await self.user.drop()
        for w in self.pipeline.workers:
            if "Traceback" in w.log():
                print(f"--- {w.name} log (has a traceback) ---\n{w.log()[-20000:]}")

    async def cli(self, *args: str) -> str:
        out = await self.pipeline.cli(*args)
        self.outputs.append(out)
        return out

    async def leaks(self) -> list[str]:
        texts = {f"log of {w.name}": w.log() for w in self.pipeline.workers}
        for w in self.pipeline.workers:
            if w.proc is not None and w.proc.returncode is None:
                pages = await web_texts(w)
                texts.update({f"{w.name} page {path}": text for path, text in pages.items()})
        texts.update({f"command output #{n}": out for n, out in enumerate(self.outputs)})
        failed = await self.pipeline.read_topic("app-ids-failed")
        texts["app-ids-failed"] = "\n".join(repr(v) for _, v in failed)
        assert any(w.log() for w in self.pipeline.workers), "no worker log to grep"
        return leaks(texts, self.secrets)


# The fault tests' fakes, imported by those modules in place of conftest's ``steam`` and
# ``discord`` fixtures.
@pytest.fixture(name="steam")
async def sweep_steam() -> AsyncIterator[FakeSteam]:
    """No rate limit, a quarter of a second per answer: a sweep of a few thousand apps lasts
    long enough to be interrupted at chosen points (the fake counts the requests it served)."""
    async with FakeSteam(rate_limit=None, latency=0.25) as fake:
        yield fake


@pytest.fixture(name="discord")
async def sweep_discord() -> AsyncIterator[FakeDiscord]:
    """Discord's channel limit is other tests' subject."""
    async with FakeDiscord(channel_limit=None) as fake:
        yield fake


# Settings of the sweeps of the fault tests. Group timeouts and the seed dedupe window keep
# their production defaults: recovery is measured as operators get it.
SWEEP_BATCH = 100


SWEEP_ENV = {
    "STEAM_BATCH_SIZE": str(SWEEP_BATCH),
    "STEAM_MAX_REQUESTS_PER_MINUTE": "600",
    # Discord's own limits are other tests' subject: here they only must not slow the count.
    "DISCORD_CHANNEL_MESSAGES": "1000",
    "DISCORD_DIGEST_THRESHOLD": "50",
}


async def first_sweep(run: FaultRun, catalog: Catalog, *workers: Worker) -> None:
    """Round 1: every app priced, nothing changed yet, nothing left in flight."""
    await seed_apps(run.pipeline, catalog.apps)
    await wait_until_right(
        "the first sweep", lambda: sweep_problems(run.pipeline, catalog), timeout=90
    )
    await wait_until_right("the first sweep to settle", Quiet(run.pipeline, workers), timeout=60)
    await past_seed_window(run)


async def right_and_settled(
    run: FaultRun,
    catalog: Catalog,
    workers: Sequence[Worker],
    what: str,
    timeout: float,
    since: float | None = None,
) -> float:
    """Wait until every row and message is right (``what``), then until ``workers`` settle, and
    check that settling added nothing: the seconds from ``since`` (the call if None) until right.
    """
    start = time.monotonic() if since is None else since
    await wait_until_right(
        what, lambda: sweep_problems(run.pipeline, catalog, run.discord), timeout=timeout
    )
    took = time.monotonic() - start
    await wait_until_right("the workers to settle", Quiet(run.pipeline, workers), timeout=60)
    assert await sweep_problems(run.pipeline, catalog, run.discord) == ""
    return took


async def past_seed_window(run: FaultRun) -> None:
    """Wait until seeds start a new round at once: SEED_DEDUPE_SECONDS after the last request."""
    window = float(run.pipeline.env.get("SEED_DEDUPE_SECONDS", Settings.seed_dedupe_seconds))

    async def past() -> bool:
        return time.monotonic() - run.steam.requests[-1].time > window + 0.5

    await wait_for("the seed dedupe window to pass", past, timeout=window + 30)


async def served_at_least(steam: Any, since: int, n: int) -> None:
    async def served() -> bool:
        return store_requests(steam, since) >= n

    await wait_for(f"{n} store requests", served, timeout=90, every=0.05)
