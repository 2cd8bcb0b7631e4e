"""The price pages' handlers (thin: parse, read, render) and their own MySQL reader.

Read-only: only GET (and HEAD) are routed, so every other method answers 405. The reader has a
small pool of its own, apart from the sinks' (a page never waits behind a sink's transaction,
and a sink never waits for a page), with short timeouts on the client and on the server: while
MySQL is down or stuck, a page answers 503 "database unavailable" within seconds and the event
loop, shared with the pipeline's agents, never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiomysql
import pymysql
from faust import web
from mode import Service

from steamprice.app import app, settings
from steamprice.database import connect_kwargs, describe_error
from steamprice.pages import query as pq
from steamprice.pages import render
from steamprice.services import database

logger = logging.getLogger(__name__)
T = TypeVar("T")

# A page's whole database work (connecting included) must end within this; the server stops a
# runaway SELECT a little earlier on its own.
READ_TIMEOUT_SECONDS = 3.0
STATEMENT_TIMEOUT_SECONDS = 2.5
CONNECT_TIMEOUT_SECONDS = 2
POOL_SIZE = 3

# No script at all may run on these pages (their only styles are inline); nothing may frame them.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self';"
        " base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Unavailable(Exception):
    """MySQL cannot answer a page now (answered 503)."""


# Outages: the server is down, unreachable, stuck or too slow. Anything else is a bug (500).
OUTAGES = (
    pymysql.err.OperationalError,
    pymysql.err.InterfaceError,
    OSError,
    asyncio.TimeoutError,
)


class PageReader(Service):
    """The pages' connection pool: opened on first use, dropped and reopened after an outage."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool: aiomysql.Pool | None = None
        self._lock = asyncio.Lock()
        self._last_error = ""

    async def on_stop(self) -> None:
        pool = self._drop_pool()
        if pool is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(pool.wait_closed(), 2.0)

    async def _open_pool(self) -> aiomysql.Pool:
        kwargs = {**connect_kwargs(settings), "connect_timeout": CONNECT_TIMEOUT_SECONDS}
        # MySQL and MariaDB name the per-statement time limit differently: ask which one this is.
        probe = await aiomysql.connect(**kwargs)
        try:
            mariadb = "mariadb" in probe.get_server_info().lower()
        finally:
            probe.close()
        limit = (
            f"max_statement_time = {STATEMENT_TIMEOUT_SECONDS}"
            if mariadb
            else f"max_execution_time = {int(STATEMENT_TIMEOUT_SECONDS * 1000)}"
        )
        kwargs["init_command"] = f"{kwargs['init_command']}, {limit}"
        return await aiomysql.create_pool(
            **kwargs, minsize=0, maxsize=POOL_SIZE, autocommit=True, pool_recycle=300
        )

    def _drop_pool(self) -> aiomysql.Pool | None:
        """Close every connection now, stuck ones included; the next page opens a new pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()
        return pool

    async def _read(self, work: Callable[[aiomysql.Cursor], Awaitable[T]]) -> T:
        async with self._lock:
            if self._pool is None:
                self._pool = await self._open_pool()
            pool = self._pool
        conn = await pool.acquire()
        try:
            async with conn.cursor() as cur:
                return await work(cur)
        except BaseException:
            conn.close()  # never back to the pool in an unknown state
            raise
        finally:
            await pool.release(conn)

    async def read(self, work: Callable[[aiomysql.Cursor], Awaitable[T]]) -> T:
        """``work``'s result, or :class:`Unavailable` within ``READ_TIMEOUT_SECONDS``."""
        if not database.ready.is_set():
            raise Unavailable("the worker has not reached MySQL since it started")
        try:
            result = await asyncio.wait_for(self._read(work), READ_TIMEOUT_SECONDS)
        except OUTAGES as exc:
            self._drop_pool()
            text = describe_error(exc) if str(exc) else f"no answer in {READ_TIMEOUT_SECONDS:.0f} s"
            if text != self._last_error:  # once per distinct error, not per page view
                logger.warning("Price pages: database unavailable (%s)", text)
            self._last_error = text
            raise Unavailable(text) from exc
        if self._last_error:
            logger.info("Price pages: database available again")
            self._last_error = ""
        return result


reader = PageReader()
app.service(reader)  # type: ignore[arg-type]


async def _rows(cur: aiomysql.Cursor, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    await cur.execute(sql, args)
    return list(await cur.fetchall())


# --- what each page reads ---------------------------------------------------------------------


async def _regions(cur: aiomysql.Cursor) -> list[str]:
    return [str(cc) for (cc,) in await _rows(cur, pq.REGIONS_SQL)]


async def load_prices(query: pq.PriceQuery) -> tuple[list[pq.PriceRow], bool, list[str]]:
    async def work(cur: aiomysql.Cursor) -> tuple[list[pq.PriceRow], bool, list[str]]:
        rows = await _rows(cur, *pq.price_list_sql(query))
        has_next = len(rows) > query.per_page and query.page < pq.deepest_page(query.per_page)
        rows = rows[: query.per_page]
        ids = [int(r[0]) for r in rows]
        regions: list[tuple[Any, ...]] = []
        changes: list[tuple[Any, ...]] = []
        if ids:
            regions = await _rows(cur, *pq.other_regions_sql(ids))
            changes = await _rows(cur, *pq.last_changes_sql(query.cc, ids))
        return pq.price_rows(rows, regions, changes), has_next, await _regions(cur)

    return await reader.read(work)


async def load_app(app_id: int, now: datetime) -> pq.AppDetail:
    async def work(cur: aiomysql.Cursor) -> pq.AppDetail | None:
        found = await _rows(cur, pq.APP_SQL, (app_id,))
        if not found:
            return None
        return pq.app_detail(
            found[0],
            await _rows(cur, pq.APP_PRICES_SQL, (app_id,)),
            await _rows(cur, pq.APP_HISTORY_SQL, (app_id,)),
            await _rows(cur, pq.APP_CHANGES_SQL, (app_id,)),
            now,
        )

    detail = await reader.read(work)
    if detail is None:
        raise pq.NotFound(f"app {app_id} is not tracked")
    return detail


async def load_changes(query: pq.ChangeQuery) -> tuple[list[pq.Change], bool, list[str]]:
    async def work(cur: aiomysql.Cursor) -> tuple[list[pq.Change], bool, list[str]]:
        rows = await _rows(cur, *pq.change_list_sql(query))
        changes = [pq.Change.from_row(r) for r in rows[: query.per_page]]
        return changes, len(rows) > query.per_page, await _regions(cur)

    return await reader.read(work)


# --- the handlers -----------------------------------------------------------------------------


def default_cc() -> str:
    return settings.steam_countries[0]


class Page(web.View):
    """A page and its JSON twin share the loading; the subclass says what to show."""

    json_api = False

    async def answer(self, build: Callable[[], Awaitable[tuple[str, Any]]]) -> web.Response:
        started = time.perf_counter()
        try:
            html, data = await build()
            status = 200
        except pq.BadParameter as exc:
            status, html, data = self._problem(400, "Bad request", str(exc))
        except pq.NotFound as exc:
            status, html, data = self._problem(404, "Not found", str(exc))
        except Unavailable as exc:
            status, html, data = self._problem(
                503,
                "Database unavailable",
                "MySQL does not answer right now, so prices cannot be shown; the pipeline keeps"
                " its work in Kafka and this page works again as soon as MySQL is back."
                f" ({exc})",
            )
        except Exception:
            logger.exception("Price page %s failed", self.__class__.__name__)
            status, html, data = self._problem(
                500, "Internal error", "The page failed; the worker log says why."
            )
        elapsed_ms = (time.perf_counter() - started) * 1000
        headers = {**HEADERS, "Server-Timing": f"app;dur={elapsed_ms:.1f}"}
        if self.json_api:
            return self.json(data, status=status, headers=headers)
        return self.html(html, status=status, headers=headers)

    def _problem(self, status: int, title: str, message: str) -> tuple[int, str, Any]:
        html = "" if self.json_api else render.error_page(status, title, message)
        return status, html, {"error": title.lower(), "detail": message}


@app.page("/prices")
class PricesPage(Page):
    async def get(self, request: web.Request) -> web.Response:
        async def build() -> tuple[str, Any]:
            query = pq.parse_price_query(request.query, default_cc())
            rows, has_next, regions = await load_prices(query)
            if self.json_api:
                return "", {
                    "cc": query.cc,
                    "q": query.q,
                    "min_discount": query.min_discount,
                    "at_low": query.at_low,
                    "sort": query.sort,
                    "page": query.page,
                    "per_page": query.per_page,
                    "next_page": query.page + 1 if has_next else None,
                    "regions": regions,
                    "items": [r.to_json() for r in rows],
                }
            return render.prices_page(query, rows, has_next, regions), None

        return await self.answer(build)


@app.page("/apps/{app_id}")
class AppPage(Page):
    async def get(self, request: web.Request, app_id: str) -> web.Response:
        async def build() -> tuple[str, Any]:
            detail = await load_app(pq.parse_app_id(app_id), datetime.now(UTC))
            if self.json_api:
                return "", detail.to_json()
            return render.app_page(detail), None

        return await self.answer(build)


@app.page("/changes")
class ChangesPage(Page):
    async def get(self, request: web.Request) -> web.Response:
        async def build() -> tuple[str, Any]:
            query = pq.parse_change_query(request.query)
            changes, has_more, regions = await load_changes(query)
            if self.json_api:
                return "", {
                    "cc": query.cc,
                    "kind": query.kind,
                    "app": query.app_id,
                    "per_page": query.per_page,
                    "next_before": (
                        pq.format_cursor(render.next_cursor(changes))
                        if has_more and changes
                        else None
                    ),
                    "regions": regions,
                    "items": [c.to_json() for c in changes],
                }
            return render.changes_page(query, changes, has_more, regions), None

        return await self.answer(build)


@app.page("/api/prices")
class PricesApi(PricesPage):
    json_api = True


@app.page("/api/apps/{app_id}")
class AppApi(AppPage):
    json_api = True


@app.page("/api/changes")
class ChangesApi(ChangesPage):
    json_api = True
