"""MySQL/MariaDB access: schema migrations and a pool service that outlives outages."""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiomysql
import pymysql
from mode import Service

from steamprice.metrics import Metrics
from steamprice.settings import Settings

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATION_RE = re.compile(r"^(\d+)_[\w-]+\.sql$")
T = TypeVar("T")

# A write that fails is retried, never dropped: outages, lost connections and deadlocks heal by
# themselves; a genuine SQL bug stalls the sink loudly (log line + steam_sink_retries_total)
# rather than losing rows.
TRANSIENT_ERRORS = (pymysql.err.MySQLError, OSError, asyncio.TimeoutError)


def migrations(sql_dir: Path = SQL_DIR) -> list[tuple[int, str, list[str]]]:
    """The numbered migrations in order: (version, file name, statements)."""
    found = []
    for path in sorted(sql_dir.glob("*.sql")):
        m = MIGRATION_RE.match(path.name)
        if not m:
            raise ValueError(f"{path}: migration files are named NNN_description.sql")
        text = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")
        )
        statements = [s.strip() for s in text.split(";") if s.strip()]
        found.append((int(m.group(1)), path.name, statements))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"{sql_dir}: two migrations share a number")
    return sorted(found)


def connect_kwargs(settings: Settings, with_db: bool = True) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": settings.mysql_host,
        "port": settings.mysql_port,
        "user": settings.mysql_user,
        "password": settings.mysql_password.get(),
        "charset": "utf8mb4",
        "connect_timeout": 5,
    }
    if with_db:
        kwargs["db"] = settings.mysql_db
    return kwargs


async def migrate(settings: Settings, sql_dir: Path = SQL_DIR) -> list[str]:
    """Create the database if needed and apply the migrations not yet applied (idempotent)."""
    conn = await aiomysql.connect(**connect_kwargs(settings, with_db=False), autocommit=True)
    applied_now: list[str] = []
    # "IF NOT EXISTS" on an existing object is the normal case here, not worth a warning.
    warnings.filterwarnings("ignore", message=".*(already )?exists", category=pymysql.Warning)
    try:
        async with conn.cursor() as cur:
            db = settings.mysql_db.replace("`", "``")
            await cur.execute(
                f"CREATE DATABASE IF NOT EXISTS `{db}`"
                " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
            await cur.execute(f"USE `{db}`")
            await cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INT NOT NULL PRIMARY KEY,"
                " name VARCHAR(255) NOT NULL,"
                " applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
                ") ENGINE=InnoDB"
            )
            # One migrator at a time (two workers starting together).
            await cur.execute("SELECT GET_LOCK('steamprice_migrate', 60)")
            try:
                await cur.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in await cur.fetchall()}
                for version, name, statements in migrations(sql_dir):
                    if version in done:
                        continue
                    for statement in statements:
                        await cur.execute(statement)
                    await cur.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                    applied_now.append(name)
                    logger.info("Applied migration %s", name)
            finally:
                await cur.execute("SELECT RELEASE_LOCK('steamprice_migrate')")
    finally:
        conn.close()
    return applied_now


class Database(Service):
    """Owns the aiomysql pool; connects (and migrates) in the background until it succeeds."""

    def __init__(self, settings: Settings, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.pool: aiomysql.Pool | None = None
        self.ready = asyncio.Event()

    @Service.task
    async def _connect(self) -> None:
        delay = 1.0
        while not self.should_stop:
            try:
                await migrate(self.settings)
                self.pool = await aiomysql.create_pool(
                    **connect_kwargs(self.settings),
                    minsize=1,
                    maxsize=4,
                    autocommit=False,
                    pool_recycle=300,
                )
                self.ready.set()
                logger.info(
                    "Connected to MySQL at %s:%d/%s",
                    self.settings.mysql_host,
                    self.settings.mysql_port,
                    self.settings.mysql_db,
                )
                return
            except TRANSIENT_ERRORS as exc:
                logger.warning(
                    "MySQL not reachable yet (%s); retrying in %.0f s", describe_error(exc), delay
                )
                await self.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def on_stop(self) -> None:
        if self.pool is not None:
            self.pool.close()
            await self.pool.wait_closed()
            self.pool = None

    async def transaction(self, sink: str, work: Callable[[aiomysql.Cursor], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction, retrying with backoff until it commits.

        The caller's offsets are not acknowledged until this returns, so an outage delays
        the data but never drops it; ``work`` must be idempotent (it may run twice).
        """
        delay = 0.5
        while True:
            await self.ready.wait()
            assert self.pool is not None
            try:
                async with self.pool.acquire() as conn:
                    try:
                        async with conn.cursor() as cur:
                            result = await work(cur)
                        await conn.commit()
                        return result
                    except BaseException:
                        try:
                            await conn.rollback()
                        except Exception:
                            pass
                        raise
            except TRANSIENT_ERRORS as exc:
                if self.should_stop:
                    raise
                self.metrics.sink_retries.labels(sink).inc()
                logger.warning(
                    "MySQL write for %s failed (%s); retrying in %.1f s",
                    sink,
                    describe_error(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def write(self, sink: str, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run ``executemany`` for each (statement, rows) in one transaction; rowcounts back."""

        async def work(cur: aiomysql.Cursor) -> list[int]:
            counts = []
            for statement, rows in statements:
                if rows:
                    await cur.executemany(statement, rows)
                    counts.append(int(cur.rowcount))
                else:
                    counts.append(0)
            return counts

        return await self.transaction(sink, work)


def describe_error(exc: BaseException) -> str:
    """An error's class and text; MySQL errors never carry the password."""
    return f"{exc.__class__.__name__}: {exc}"
