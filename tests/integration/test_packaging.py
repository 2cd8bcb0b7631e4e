"""A plain install migrates: the wheel ships sql/ as ``steamprice.sql``, read from site-packages.

Builds the wheel from this checkout, installs it (and its pinned dependencies) into a fresh venv
and runs ``steamprice migrate`` from an unrelated directory against a scratch database on the
shared MariaDB. Slow (a venv and an install), so it is in the slow tier.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from steamprice.database import migrations
from tests.support.database import drop_database, query
from tests.support.infra import MYSQL, REPO

pytestmark = pytest.mark.slow


async def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        *map(str, cmd),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 900)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{text[-4000:]}"
    return text


@pytest.fixture
async def scratch_db() -> AsyncIterator[str]:
    name = f"it_wheel_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        await drop_database(name)


async def test_the_installed_wheel_migrates_from_another_directory(
    tmp_path: Path, scratch_db: str
) -> None:
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source, wheels, elsewhere = tmp_path / "source", tmp_path / "wheels", tmp_path / "elsewhere"
    elsewhere.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for part in ("steamprice", "sql"):
        shutil.copytree(REPO / part, source / part, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    await run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, source, cwd=tmp_path
    )
    [wheel] = wheels.glob("steamprice-*.whl")
    await run(sys.executable, "-m", "venv", tmp_path / "venv", cwd=tmp_path)
    bin_dir = tmp_path / "venv" / "bin"
    await run(bin_dir / "pip", "install", "-q", wheel, cwd=tmp_path)

    # Nothing of the checkout on the path: the package must come from the venv alone.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        MYSQL_HOST=str(MYSQL["host"]),
        MYSQL_PORT=str(MYSQL["port"]),
        MYSQL_USER=str(MYSQL["user"]),
        MYSQL_PASSWORD=str(MYSQL["password"]),
        MYSQL_DB=scratch_db,
        APP_ID=f"it-wheel-{scratch_db}",
    )
    where = await run(
        bin_dir / "python",
        "-c",
        "import steamprice.database as d; print(d.SQL_DIR)",
        cwd=elsewhere,
        env=env,
    )
    assert Path(where.strip()).is_relative_to(tmp_path / "venv"), where

    out = await run(bin_dir / "steamprice", "migrate", cwd=elsewhere, env=env)
    expected = migrations()  # read from this checkout's sql/
    assert f"Database {scratch_db}: applied" in out, out
    applied = await query(scratch_db, "SELECT version, name FROM schema_migrations ORDER BY 1")
    assert applied == [(v, name) for v, name, _ in expected]
    tables = {r[0] for r in await query(scratch_db, "SHOW TABLES")}
    assert {
        "apps",
        "price_current",
        "price_history",
        "price_changes",
        "discord_deliveries",
    } <= tables

    again = await run(bin_dir / "steamprice", "migrate", cwd=elsewhere, env=env)
    assert f"Database {scratch_db}: schema up to date" in again
