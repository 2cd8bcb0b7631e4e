"""The store client against the fake Steam: settings scaled down to fractions of a second, a
started client, its metric samples and a short poll."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from steamprice.metrics import Metrics
from steamprice.settings import Secret, Settings
from steamprice.store_client import StoreClient


def client_settings(url: str, **overrides: Any) -> Settings:
    """Settings for a client of the fake at ``url``: every pace fast, every pause short."""
    values: dict[str, Any] = {
        "steam_store_url": url,
        "steam_api_url": url,
        "steamspy_url": f"{url}/api.php",
        "steam_api_key": Secret("testkey"),
        "steam_max_requests_per_minute": 6000.0,
        "steam_getitems_max_requests_per_minute": 6000.0,
        "steam_backoff_seconds": 0.3,
        "steam_ban_pause_seconds": 0.5,
        "steam_retry_base_seconds": 0.01,
        "steam_request_timeout_seconds": 0.5,
        **overrides,
    }
    return Settings(**values)


async def started(settings: Settings) -> StoreClient:
    """A started client with a fresh metrics registry; the caller stops it."""
    client = StoreClient(settings, Metrics.create())
    await client.start()
    return client


def sample(client: StoreClient, name: str, **labels: str) -> float:
    """The client's metric ``name`` with ``labels`` (0 when never counted)."""
    return client.metrics.registry.get_sample_value(name, labels or None) or 0.0


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail after ``timeout``."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def requests_counted(client: StoreClient, endpoint: str, statuses: set[str]) -> float:
    """How many requests to ``endpoint`` the client counted with any of ``statuses``."""
    return sum(
        sample(client, "steam_api_requests_total", endpoint=endpoint, status=status)
        for status in statuses
    )
