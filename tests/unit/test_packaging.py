"""What the wheel holds, as pyproject.toml declares it (the install: integration/test_packaging)."""

from __future__ import annotations

import tomllib

from steamprice.database import SQL_DIR, migrations
from tests.support.infra import REPO


def test_every_package_of_the_source_is_in_the_wheel_and_sql_ships_as_steamprice_sql() -> None:
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    sources = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "steamprice").rglob("__init__.py")
    }
    assert set(conf["packages"]) == sources | {"steamprice.sql"}
    assert conf["package-dir"] == {"steamprice.sql": "sql"}
    assert conf["package-data"]["steamprice.sql"] == ["*.sql"]
    # Every data file of the package (templates ...) is declared, or the wheel leaves it out.
    for path in (REPO / "steamprice").rglob("*"):
        if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        owner = next((q for q in path.parents if (q / "__init__.py").exists()), REPO / "steamprice")
        package = ".".join(owner.relative_to(REPO).parts)
        rel = path.relative_to(owner)
        globs = conf["package-data"].get(package, [])
        assert any(rel.match(g) for g in globs), f"{package}: {rel} is not in package-data"


def test_migrations_are_read_as_package_resources_from_the_top_level_sql_folder() -> None:
    # In a checkout (an editable install) the package is the sql/ folder itself.
    assert {name for _, name, _ in migrations()} == {p.name for p in (REPO / "sql").glob("*.sql")}
    assert SQL_DIR.joinpath("001_initial.sql").read_text(encoding="utf-8").startswith("--")
