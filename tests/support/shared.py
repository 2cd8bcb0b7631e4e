"""The shared real data (price snapshots, recorded API samples), found only via one variable.

``STEAMPRICE_SHARED_DATA`` names the folder (``make`` sets it to ``../shared/data/steam``). A test
that needs a file of it calls :func:`require_shared_data`: absent data skips the test with a
message naming the variable, except under ``CI=true``, where it fails (CI must not go green on
a test that never ran).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "STEAMPRICE_SHARED_DATA"


def shared_data_dir() -> Path | None:
    """The folder ``STEAMPRICE_SHARED_DATA`` names, or None when unset or not a folder."""
    value = os.environ.get(ENV, "")
    path = Path(value) if value else None
    return path if path is not None and path.is_dir() else None


def require_shared_data(*names: str) -> Path:
    """The shared data folder holding ``names``; skips (fails under ``CI=true``) without them."""
    folder = shared_data_dir()
    missing = [n for n in names if folder is None or not (folder / n).is_file()]
    if folder is not None and not missing:
        return folder
    where = f"{ENV}={os.environ[ENV]!r}" if os.environ.get(ENV) else f"{ENV} is not set"
    message = (
        f"shared data missing: {', '.join(missing)} ({where}; set {ENV} to the folder "
        "holding them, e.g. ../shared/data/steam, as `make` does)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
