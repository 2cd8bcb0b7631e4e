"""Integration fixtures: the real local stack (``make up``), fakes for Steam and Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes import FakeDiscord, FakeSteam
from tests.integration.harness import Pipeline, stack_problem

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", autouse=True)
def _stack_is_up() -> None:
    problem = stack_problem()
    if problem:
        # Not a skip: `make test` brings the stack up, so a missing service is a real failure.
        pytest.fail(problem, pytrace=False)


@pytest.fixture
async def steam() -> AsyncIterator[FakeSteam]:
    async with FakeSteam(rate_limit=(200, 300.0)) as fake:
        yield fake


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


@pytest.fixture
async def pipeline(
    tmp_path: Path, steam: FakeSteam, discord: FakeDiscord
) -> AsyncIterator[Pipeline]:
    p = Pipeline(
        tmp_path,
        STEAM_STORE_URL=steam.url,
        STEAM_API_URL=steam.url,
        STEAMSPY_URL=f"{steam.url}/api.php",
        DISCORD_WEBHOOK_URL=discord.webhook_url("4242", "tok-integration-secret"),
    )
    try:
        yield p
    finally:
        await p.close()
        for w in p.workers:
            if "Traceback" in w.log():
                print(f"--- {w.name} log (has a traceback) ---\n{w.log()[-20000:]}")
