"""Shared data is found through STEAMPRICE_SHARED_DATA only; absent, it skips (fails under CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.shared import ENV, require_shared_data


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "present.csv").write_text("x")
    return tmp_path


def test_the_folder_holding_the_files_is_returned(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, str(folder))
    assert require_shared_data("present.csv") == folder


@pytest.mark.parametrize("value", [None, "", "/nonexistent/steam", "FOLDER"])
def test_missing_data_skips_with_the_variable_named(
    value: str | None, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, str(folder) if value == "FOLDER" else value)
    with pytest.raises(pytest.skip.Exception, match=ENV):
        require_shared_data("present.csv", "absent.csv.gz")


def test_missing_data_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(pytest.fail.Exception, match=f"{ENV} is not set"):
        require_shared_data("prices.csv.gz")
