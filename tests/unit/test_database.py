"""Migrations as files, and the Database service's retry rules (no server: the pool is faked)."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pymysql
import pytest

from steamprice import database
from steamprice.database import (
    SQL_DIR,
    Database,
    DatabaseStopping,
    RejectedWrite,
    is_data_error,
    migrations,
)
from steamprice.metrics import Metrics
from steamprice.settings import Settings

# Shipped migrations are never edited (a database that applied one would never see the edit):
# change the schema with a new numbered file instead.
SHIPPED = {
    "001_initial.sql": "0c62355474304088350c016f92b3afc010febc696cbb99a13a3fad6dc776a132",
    "002_price_history.sql": "4518e46059d79352cd4534123f7cb4536e2b5f598a74aa78b09272a44273801c",
    "003_price_history_backfill.sql": "56b704dae65caa5b2a369b22830412e1726f2eabbdc5029fcc1e50cc0e367b06",
    "004_price_changes_lowest_90d.sql": "55f7ed8c316eacc73590dc2f2e23841bce620e95e60ec313848094d087db8901",
    "010_discord_outbox.sql": "131d00c13cd5a13de88f66eb5470afe6ad1916d7e381fe21c9f115d8ad4bab3e",
    "011_price_checks.sql": "5762cbe79e24af103f867258b7742a55c91d45de85b3d13cb37ba84a0fd5a7f8",
    "020_price_pages.sql": "e4a59804d1d9a607d4fc41ced8990b65dd1b950f424217e3278d8c8331dd59e5",
    "030_discord_rate_limits.sql": "e4ffe2c96c085f8e7fd4ec9577edab35ff1cd837ad8824da022e625afda64cec",
    "050_alert_rules.sql": "781583c513cfba7ea2967039467f7cd4fefa509d9a9d1eebd6fbee9ed9c3313c",
    "060_discount_ends.sql": "de61abd78c2a0def9804790562f5276be79f1713a218f89b7a6960b53ae584e7",
}


def test_shipped_migrations_are_unchanged() -> None:
    for name, digest in SHIPPED.items():
        assert hashlib.sha256((SQL_DIR / name).read_bytes()).hexdigest() == digest, name


def test_every_migration_parses_into_statements_in_order() -> None:
    found = migrations()
    assert [v for v, _, _ in found] == sorted(v for v, _, _ in found)
    assert [v for v, _, _ in found][:4] == [1, 2, 3, 4]
    for _, name, statements in found:
        assert statements, name
        for s in statements:
            assert not s.lstrip().startswith("--"), name


# Syntax one of the two servers lacks (MySQL 8.4 reference manual vs MariaDB 10.11).
NOT_PORTABLE = {
    r"\)\s+AS\s+\w+\s*(\(|ON\s+DUPLICATE)": "INSERT ... AS alias (MySQL 8.0.19+ only)",
    r"ADD\s+(COLUMN\s+)?IF\s+NOT\s+EXISTS": "ADD COLUMN IF NOT EXISTS (MariaDB only)",
    r"CREATE\s+OR\s+REPLACE\s+TABLE": "CREATE OR REPLACE TABLE (MariaDB only)",
    r"\bRETURNING\b": "RETURNING (MariaDB only)",
    r"DROP\s+(COLUMN|INDEX|KEY)\s+IF\s+EXISTS": "DROP ... IF EXISTS in ALTER (MariaDB only)",
    r"\bJSON_TABLE\b|\bVALUES\s+ROW\b": "MySQL-only table functions",
    r"\bINVISIBLE\b|\bSEQUENCE\b": "features the two spell differently",
    r"(ADD\s+(KEY|INDEX)|CREATE\s+INDEX)\s+IF\s+NOT\s+EXISTS": "index IF NOT EXISTS (MariaDB only)",
}


def test_migrations_use_only_syntax_both_servers_accept() -> None:
    for _, name, statements in migrations():
        for statement in statements:
            for pattern, why in NOT_PORTABLE.items():
                assert not re.search(pattern, statement, re.IGNORECASE), f"{name}: {why}"


def test_misnamed_or_clashing_migrations_are_refused(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("SELECT 1;\n-- a comment; with a semicolon\nSELECT 2")
    assert migrations(tmp_path) == [(1, "001_a.sql", ["SELECT 1", "SELECT 2"])]
    (tmp_path / "001_b.sql").write_text("SELECT 3")
    with pytest.raises(ValueError, match="share a number"):
        migrations(tmp_path)
    (tmp_path / "001_b.sql").unlink()
    (tmp_path / "latest.sql").write_text("SELECT 4")
    with pytest.raises(ValueError, match="NNN_description"):
        migrations(tmp_path)


def test_data_errors_are_told_apart_from_outages() -> None:
    assert is_data_error(pymysql.err.DataError(1406, "Data too long for column 'currency'"))
    assert is_data_error(pymysql.err.OperationalError(4025, "CONSTRAINT failed"))
    assert is_data_error(pymysql.err.OperationalError(3819, "Check constraint violated"))
    assert not is_data_error(pymysql.err.OperationalError(2003, "Can't connect"))
    assert not is_data_error(pymysql.err.OperationalError(1213, "Deadlock found"))
    assert not is_data_error(OSError("connection reset"))


class Flaky(Database):
    """A Database whose transactions fail as scripted instead of reaching a server."""

    def __init__(self, failures: list[BaseException]) -> None:
        super().__init__(Settings(), Metrics.create())
        self.failures = failures
        self.calls = 0
        self.ready.set()

    async def _run_once(self, work: Any) -> Any:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return await work(None)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "RETRY_FIRST_SECONDS", 0.001)
    monkeypatch.setattr(database, "RETRY_MAX_SECONDS", 0.002)


async def ok(_: Any) -> str:
    return "done"


async def test_outages_are_retried_until_the_write_commits() -> None:
    lost = pymysql.err.OperationalError(2013, "Lost connection to server during query")
    db = Flaky([lost, TimeoutError(), lost])
    assert await db.transaction("price_current", ok) == "done"
    assert db.calls == 4
    assert db.metric("steam_sink_retries_total", sink="price_current") == 3.0
    assert db.metric("steam_mysql_up") == 1.0


async def test_a_data_error_is_retried_by_default_but_rejected_on_request() -> None:
    too_long = pymysql.err.DataError(1406, "Data too long")
    db = Flaky([too_long])
    assert await db.transaction("discord_ledger", ok) == "done"  # old behaviour: wait it out
    db = Flaky([too_long])
    with pytest.raises(RejectedWrite, match="1406"):
        await db.transaction("price_current", ok, reject_bad_data=True)
    assert db.calls == 1
    # A bug in the writer stalls the sink loudly instead of dropping the batch.
    db = Flaky([KeyError("bug")])
    assert await db.transaction("price_current", ok, reject_bad_data=True) == "done"


async def test_a_stopping_service_abandons_the_write() -> None:
    db = Flaky([pymysql.err.OperationalError(2003, "Can't connect")])
    await db.stop()
    with pytest.raises(DatabaseStopping):
        await db.transaction("price_current", ok)
    assert db.calls == 0


class Refusing(Database):
    """Runs transactions without a server (the writer below refuses negative numbers)."""

    def __init__(self) -> None:
        super().__init__(Settings(), Metrics.create())
        self.ready.set()
        self.transactions = 0

    async def _run_once(self, work: Any) -> Any:
        self.transactions += 1
        return await work(None)


async def test_a_refused_batch_is_split_until_the_bad_rows_are_found() -> None:
    db = Refusing()
    written: list[int] = []

    async def store(_: Any, part: Sequence[int]) -> Counter[str]:
        if any(n < 0 for n in part):
            raise pymysql.err.DataError(1264, "Out of range value")
        written.extend(part)
        return Counter({"numbers": len(part)})

    items = [1, 2, -3, 4, 5, 6, 7, -8, 9, 10, 11, 12, 13, 14, 15, 16]
    result = await db.write_batch("numbers", items, store)
    assert [item for item, _ in result.rejected] == [-3, -8]
    assert sorted(written) == [n for n in items if n > 0]
    assert result.written == Counter({"numbers": 14})
    assert db.transactions <= 2 * 2 * 4 + 1  # about 2 * log2(n) per bad row, not one per row
    assert (await db.write_batch("numbers", [], store)).written == Counter()
