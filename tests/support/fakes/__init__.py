"""Local fake HTTP servers standing in for Steam, SteamSpy and Discord in tests and benchmarks.

Steam and Discord are never reachable from our machines, so every integration test and benchmark
talks to these aiohttp servers instead. They follow ``/work/shared/docs/steam-api.md`` to the byte,
quirks and limits included (``null`` bodies on 400/429, ``data: []`` for unpriced apps,
``retry_after`` in milliseconds on unversioned Discord URLs ...).

* :class:`tests.support.fakes.steam.FakeSteam` -- store ``/api/appdetails``, ``IStoreService/GetAppList``,
  ``IStoreBrowseService/GetItems`` (discount end dates) and SteamSpy ``/api.php`` on one port.
* :class:`tests.support.fakes.discord.FakeDiscord` -- execute-webhook endpoints of every API version.

Both share :class:`FakeServer` for their lifecycle::

    async with FakeSteam(rate_limit=None) as steam:
        ...  # steam.url == "http://127.0.0.1:<port>"
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from aiohttp import web

if TYPE_CHECKING:
    from tests.support.fakes.discord import FakeDiscord
    from tests.support.fakes.steam import FakeSteam

__all__ = ["Clock", "FakeDiscord", "FakeServer", "FakeSteam", "ManualClock", "run_until_signalled"]

# A monotonic clock in seconds; tests pass a controllable one to skip real waiting.
Clock = Callable[[], float]


class ManualClock:
    """A :data:`Clock` the test moves by hand: a fake's limits without real waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


log = logging.getLogger(__name__)


class FakeServer:
    """Start/stop plumbing shared by the fakes: one aiohttp app on one TCP port."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self.clock: Clock = clock
        # Empty until start(); then the base URL without a trailing slash.
        self.url: str = ""
        self._runner: web.AppRunner | None = None
        # Set by stop() so that handlers sleeping on purpose (latency, "timeout" faults) wake up
        # at once instead of holding the shutdown for tens of seconds.
        self._closing = asyncio.Event()

    def build_app(self) -> web.Application:
        """Return the aiohttp application; subclasses add their routes."""
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = a free port), set and return :attr:`url`."""
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} already started at {self.url}")
        self._closing = asyncio.Event()
        # No access log: benchmarks send tens of thousands of requests.
        runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown_host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        """Stop listening; safe to call twice. Recorded requests stay readable."""
        self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of real time, or less if the server is stopping."""
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            pass


async def run_until_signalled(server: FakeServer, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM: the standalone ``python -m tests.support.fakes.<name>`` mode."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await server.start(host, port)
    log.info("%s listening on %s", type(server).__name__, url)
    try:
        await stop.wait()
    finally:
        await server.stop()


def __getattr__(name: str) -> Any:
    # Lazy re-exports (PEP 562): the submodules import FakeServer from here, so importing them
    # eagerly at the top of this module would be circular.
    if name == "FakeSteam":
        from tests.support.fakes.steam import FakeSteam

        return FakeSteam
    if name == "FakeDiscord":
        from tests.support.fakes.discord import FakeDiscord

        return FakeDiscord
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
