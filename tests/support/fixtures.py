"""Fixtures of every tier, loaded by ``tests/conftest.py`` through ``pytest_plugins``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from steamprice.store_client import StoreClient
from tests.support.browser import Screenshots, chromium, chromium_problem
from tests.support.database import Db, drop_database
from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.infra import stack_problem
from tests.support.notify import Notifiers
from tests.support.processes import Pipeline
from tests.support.store import client_settings, started


@pytest.fixture(scope="session")
def stack() -> None:
    """The local stack of ``make up``; a missing service fails the test (never a skip)."""
    problem = stack_problem()
    if problem:
        # Not a skip: `make test` brings the stack up, so a missing service is a real failure.
        pytest.fail(problem, pytrace=False)


@pytest.fixture
async def steam() -> AsyncIterator[FakeSteam]:
    """The fake store at Steam's own limit (200 requests per 5 minutes)."""
    async with FakeSteam(rate_limit=(200, 300.0)) as fake:
        yield fake


@pytest.fixture
async def client(fake: FakeSteam) -> AsyncIterator[StoreClient]:
    """A started store client of the test module's own ``fake`` store, its limits scaled down."""
    c = await started(client_settings(fake.url))
    yield c
    await c.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session for tests that talk to a fake by hand."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


@pytest.fixture
async def pipeline(
    tmp_path: Path, steam: FakeSteam, discord: FakeDiscord, stack: None
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


@pytest.fixture
async def db(stack: None) -> AsyncIterator[Db]:
    """A throwaway database on the shared MariaDB (dropped afterwards)."""
    d = Db()
    try:
        yield d
    finally:
        if d.service.started:
            await d.service.stop()
        await drop_database(d.name)


@pytest.fixture
async def browser(stack: None) -> AsyncIterator[Any]:
    """Headless Chromium (Debian's package); a missing browser fails the test, like the stack."""
    problem = chromium_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    async with chromium() as b:
        yield b


@pytest.fixture
def screenshots(request: pytest.FixtureRequest, tmp_path: Path) -> Screenshots:
    """Screenshots as test artifacts: ``$ARTIFACTS_DIR/<test>/`` or the test's tmp dir."""
    root = os.environ.get("ARTIFACTS_DIR")
    folder = Path(root) / request.node.name if root else tmp_path / "screenshots"
    return Screenshots(folder)


@pytest.fixture
async def notifiers(stack: None) -> AsyncIterator[Notifiers]:
    """Notifier services on a scratch database (stopped and dropped afterwards)."""
    n = Notifiers()
    try:
        yield n
    finally:
        await n.close()
