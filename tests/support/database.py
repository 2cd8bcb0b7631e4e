"""A throwaway database on the shared MariaDB with a started ``Database`` service on it."""

from __future__ import annotations

import uuid
from typing import Any

from steamprice.database import Database
from steamprice.metrics import Metrics
from steamprice.settings import Settings
from tests.support.infra import MYSQL, sql

# The tables the MySQL sinks write.
TABLES = ("apps", "price_current", "price_history", "price_changes")


class Db:
    """A throwaway database on the shared server, and a started Database service on it."""

    def __init__(self) -> None:
        self.name = f"it_mysql_{uuid.uuid4().hex[:10]}"
        self.settings = Settings(
            mysql_host=str(MYSQL["host"]), mysql_port=int(MYSQL["port"]), mysql_db=self.name
        )
        self.metrics = Metrics.create()
        self.service = Database(self.settings, self.metrics)

    async def query(self, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        return await sql(statement, args, db=self.name)

    async def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of the sink's tables, server-set timestamps included (a no-op must not
        touch them either)."""
        return {t: await self.query(f"SELECT * FROM {t} ORDER BY 1, 2, 3") for t in TABLES}


async def query(db: str, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
    """Every row ``statement`` returns from database ``db`` on the shared server (autocommit)."""
    return await sql(statement, args, db=db)


async def drop_database(name: str, server: dict[str, Any] = MYSQL) -> None:
    """Drop database ``name`` if it exists, on the shared server unless another is named."""
    await sql(f"DROP DATABASE IF EXISTS `{name}`", server=server)
