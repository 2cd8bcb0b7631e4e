"""MySQL/MariaDB access: schema migrations and a pool service that outlives outages."""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import re
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from typing import Any, Generic, TypeVar

import aiomysql
import pymysql
from mode import Service

from steamprice.metrics import Metrics
from steamprice.settings import Settings

logger = logging.getLogger(__name__)

# The migrations: sql/ at the top of the repository, installed as the package steamprice.sql.
SQL_DIR: Traversable = importlib.resources.files("steamprice.sql")
MIGRATION_RE = re.compile(r"^(\d+)_[\w-]+\.sql$")
T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 (an item of a batch)

# Every session behaves the same on MySQL 8 and MariaDB 10.11, whatever the server's defaults:
# strict (bad data is an error, never silently truncated), MySQL 8's GROUP BY rule, UTC for
# CURRENT_TIMESTAMP and FROM_UNIXTIME (DATETIME columns hold UTC).
SQL_MODE = (
    "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)
SESSION_INIT = f"SET time_zone = '+00:00', sql_mode = '{SQL_MODE}'"

# A write that fails is retried, never dropped: outages, lost connections and deadlocks heal by
# themselves; a genuine SQL bug stalls the sink loudly (log line + steam_sink_retries_total)
# rather than losing rows.
TRANSIENT_ERRORS = (pymysql.err.MySQLError, OSError, asyncio.TimeoutError)

# Errors that say "this data can never be stored" (waiting will not help): the batch is split
# to find the offending rows, which are logged and counted; the rest is written.
DATA_ERROR_CODES = frozenset(
    {
        1048,  # column cannot be null
        1264,  # out of range value
        1265,  # data truncated
        1292,  # incorrect datetime (or other) value
        1366,  # incorrect integer / string value
        1406,  # data too long
        1452,  # foreign key constraint fails
        3819,  # check constraint violated (MySQL)
        4025,  # check constraint failed (MariaDB)
    }
)

# A migration that was applied but not recorded (the process died in between) is re-run: these
# errors then mean "already there", not "broken".
ALREADY_APPLIED_CODES = frozenset(
    {
        1050,  # table already exists
        1060,  # duplicate column name
        1061,  # duplicate key name
        1826,  # duplicate foreign key constraint name
        3822,  # duplicate check constraint name (MySQL)
    }
)

RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0

# "IF NOT EXISTS" on an existing object is the normal case for migrations, not worth a warning.
# (aiomysql reports server notes as plain ``Warning``s.)
warnings.filterwarnings("ignore", message=".*exists", category=Warning, module="aiomysql")
# MySQL 8.0.20+ notes that VALUES(col) in ON DUPLICATE KEY UPDATE is deprecated (warning 1287);
# its replacement (the row alias) does not exist in MariaDB, so the note is expected.
warnings.filterwarnings(
    "ignore", message=".*'VALUES function' is deprecated", category=Warning, module="aiomysql"
)


# The most ids one ``IN (...)`` list holds. MariaDB (10.3+) rewrites a list of
# ``in_predicate_conversion_threshold`` (1000) values or more into a join over a temporary
# table, and in a multi-table ``UPDATE`` or a ``SELECT ... FOR UPDATE`` of tables that are
# growing (a first sweep) it then picked a block nested loop of the whole joined table against
# the list: 1-2 s per statement for a few thousand ids where the list below the threshold takes
# a few ms by the primary key. So longer lists are sent as several statements
# (``batches.chunks(ids, IN_LIST_MAX)``).
IN_LIST_MAX = 500


def error_code(exc: BaseException) -> int | None:
    """MySQL's numeric error code of ``exc``, if it has one."""
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def is_data_error(exc: BaseException) -> bool:
    """The server refused the values themselves; retrying the same rows cannot succeed."""
    return error_code(exc) in DATA_ERROR_CODES


class RejectedWrite(Exception):
    """The database refused the data of a batch (see :data:`DATA_ERROR_CODES`)."""


class DatabaseStopping(Exception):
    """The service is stopping: the write was abandoned, its offsets must not be committed."""


def migrations(sql_dir: Traversable = SQL_DIR) -> list[tuple[int, str, list[str]]]:
    """The numbered migrations in order: (version, file name, statements).

    Statements are separated by ``;`` at the end of a line; whole-line ``--`` comments are
    dropped (so a ``;`` may appear in a comment, never inside a string literal).
    """
    found = []
    files = [p for p in sql_dir.iterdir() if p.is_file() and p.name.endswith(".sql")]
    for path in sorted(files, key=lambda p: p.name):
        m = MIGRATION_RE.match(path.name)
        if not m:
            raise ValueError(f"{path.name}: migration files are named NNN_description.sql")
        text = "\n".join(
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if not line.lstrip().startswith("--")
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
        "init_command": SESSION_INIT,
    }
    if with_db:
        kwargs["db"] = settings.mysql_db
    return kwargs


async def migrate(settings: Settings, sql_dir: Traversable = SQL_DIR) -> list[str]:
    """Create the database if needed and apply the migrations not yet applied (idempotent).

    Each migration is recorded in ``schema_migrations`` once all its statements ran. MySQL
    commits DDL implicitly, so a migration cannot be rolled back: its statements are written to
    be re-runnable, and a re-run that finds its objects already there carries on.
    """
    plan = migrations(sql_dir)  # a malformed sql/ fails before anything is touched
    conn = await aiomysql.connect(**connect_kwargs(settings, with_db=False), autocommit=True)
    applied_now: list[str] = []
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
            # One migrator per database at a time (two workers starting together).
            lock = f"steamprice_migrate.{settings.mysql_db}"[:64]
            await cur.execute("SELECT GET_LOCK(%s, 60)", (lock,))
            (got,) = await cur.fetchone()
            if got != 1:
                raise TimeoutError(f"another migration of {settings.mysql_db} holds the lock")
            try:
                await cur.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in await cur.fetchall()}
                for version, name, statements in plan:
                    if version in done:
                        continue
                    for statement in statements:
                        try:
                            await cur.execute(statement)
                        except pymysql.err.MySQLError as exc:
                            if error_code(exc) not in ALREADY_APPLIED_CODES:
                                raise
                            logger.warning("Migration %s: already applied (%s)", name, exc)
                    await cur.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                    applied_now.append(name)
                    logger.info("Applied migration %s", name)
            finally:
                await cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))
    finally:
        conn.close()
    return applied_now


@dataclass
class BatchResult(Generic[I]):
    """What became of a batch: rows written per table and the items the database refused."""

    written: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[I, str]] = field(default_factory=list)


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
                self.metrics.mysql_up.set(1)
                self.ready.set()
                logger.info(
                    "Connected to MySQL at %s:%d/%s",
                    self.settings.mysql_host,
                    self.settings.mysql_port,
                    self.settings.mysql_db,
                )
                return
            except TRANSIENT_ERRORS as exc:
                self.metrics.mysql_up.set(0)
                logger.warning(
                    "MySQL not ready (%s); retrying in %.0f s", describe_error(exc), delay
                )
                await self.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def on_stop(self) -> None:
        if self.pool is not None:
            self.pool.close()
            await self.pool.wait_closed()
            self.pool = None

    async def _run_once(self, work: Callable[[aiomysql.Cursor], Awaitable[T]]) -> T:
        assert self.pool is not None
        conn = await self.pool.acquire()
        try:
            async with conn.cursor() as cur:
                result = await work(cur)
            await conn.commit()
            return result
        except BaseException:
            # Never hand a connection in an unknown state back to the pool (a timeout may
            # have cut a query short; a lost server leaves a dead socket): a new one is cheap.
            conn.close()
            raise
        finally:
            await self.pool.release(conn)

    async def transaction(
        self,
        sink: str,
        work: Callable[[aiomysql.Cursor], Awaitable[T]],
        *,
        reject_bad_data: bool = False,
        size: int = 0,
    ) -> T:
        """Run ``work`` in one transaction, retrying with backoff until it commits.

        The caller's offsets are not acknowledged until this returns, so an outage delays
        the data but never drops it; ``work`` must be idempotent (it may run twice). With
        ``reject_bad_data``, a data error (:data:`DATA_ERROR_CODES`) raises
        :class:`RejectedWrite` instead, and any other failure is retried too. Raises
        :class:`DatabaseStopping` when the service stops before the write succeeded.
        """
        retryable: tuple[type[BaseException], ...] = (
            (Exception,) if reject_bad_data else TRANSIENT_ERRORS
        )
        delay = RETRY_FIRST_SECONDS
        failures = 0
        first_failure = 0.0
        while True:
            await self.ready.wait()
            if self.should_stop:
                raise DatabaseStopping(sink)
            try:
                result = await asyncio.wait_for(
                    self._run_once(work), self.settings.mysql_write_timeout_seconds
                )
            except retryable as exc:
                if reject_bad_data and is_data_error(exc):
                    raise RejectedWrite(describe_error(exc)) from exc
                if self.should_stop:
                    raise DatabaseStopping(sink) from exc
                failures += 1
                if failures == 1:
                    first_failure = time.monotonic()
                self.metrics.sink_retries.labels(sink).inc()
                if isinstance(exc, TRANSIENT_ERRORS):
                    self.metrics.mysql_up.set(0)
                logger.warning(
                    "MySQL write for %s failed (%s)%s; kept, retry %d in %.1f s",
                    sink,
                    describe_error(exc),
                    f" with {size} rows" if size else "",
                    failures,
                    delay,
                    exc_info=not isinstance(exc, TRANSIENT_ERRORS),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            self.metrics.mysql_up.set(1)
            if failures:
                logger.info(
                    "MySQL write for %s succeeded after %d retries (%.1f s)",
                    sink,
                    failures,
                    time.monotonic() - first_failure,
                )
            return result

    async def write(self, sink: str, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run ``executemany`` for each (statement, rows) in one transaction; rowcounts back."""

        async def work(cur: aiomysql.Cursor) -> list[int]:
            return await execute_all(cur, statements)

        return await self.transaction(sink, work)

    async def write_batch(
        self,
        sink: str,
        items: Sequence[I],
        work: Callable[[aiomysql.Cursor, Sequence[I]], Awaitable[Counter[str]]],
    ) -> BatchResult[I]:
        """Write ``items`` with ``work`` in one transaction; isolate rows the database refuses.

        Outages and every other failure are retried until the write commits. When the
        database refuses the data itself, the batch is split in halves (each written in its
        own transaction, which idempotent writers allow) until the refused items are found;
        those are returned with the reason, the rest is written.
        """
        result: BatchResult[I] = BatchResult()
        pending: list[Sequence[I]] = [items] if items else []
        while pending:
            part = pending.pop(0)

            async def run(cur: aiomysql.Cursor, part: Sequence[I] = part) -> Counter[str]:
                return await work(cur, part)

            try:
                result.written += await self.transaction(
                    sink, run, reject_bad_data=True, size=len(part)
                )
            except RejectedWrite as exc:
                if len(part) == 1:
                    result.rejected.append((part[0], str(exc)))
                else:
                    half = len(part) // 2
                    pending[:0] = [part[:half], part[half:]]
        return result


async def execute_all(
    cur: aiomysql.Cursor, statements: Sequence[tuple[str, Sequence[Any]]]
) -> list[int]:
    """``executemany`` each (statement, rows) on ``cur``; the rowcount of each."""
    counts = []
    for statement, rows in statements:
        if rows:
            await cur.executemany(statement, rows)
            counts.append(int(cur.rowcount))
        else:
            counts.append(0)
    return counts


def describe_error(exc: BaseException) -> str:
    """An error's class and text; MySQL errors never carry the password."""
    return f"{exc.__class__.__name__}: {exc}"
