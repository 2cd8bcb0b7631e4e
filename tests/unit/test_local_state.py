"""A worker's own state: data directory lock, static group identity, table reset, the one line."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from faust.tables.recovery import E_PERSISTED_OFFSET
from faust.types import TP

from steamprice.local_state import (
    INSTANCE_ID_FILE,
    DataDirInUse,
    DataDirLock,
    Member,
    ahead_of_changelog,
    conflict,
    conflict_message,
    consistency_message,
    holder_of,
    instance_id,
    last_member_id,
    new_instance_id,
    remember_member_id,
    reset_local_tables,
    reset_tables,
    valid_instance_id,
)


def member(instance: str, host: str = "/10.0.0.1") -> Member:
    """A static member as the broker names it: ``<instance>-<UUID>``."""
    return Member(f"{instance}-{uuid.uuid4()}", "faust-0.15.3", host)


def test_a_made_instance_id_is_valid_readable_and_unique() -> None:
    made = new_instance_id("web-01.example.org")
    assert made.startswith("web-01.example.org-") and valid_instance_id(made)
    assert new_instance_id("web-01.example.org") != made
    assert new_instance_id("bad host/name:1", token="ab12") == "bad-host-name-1-ab12"
    assert new_instance_id("", token="ab12") == "worker-ab12"
    assert valid_instance_id(new_instance_id("ü" * 300))


def test_the_instance_id_is_made_once_and_kept_in_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data" / "steam-prices"
    made = instance_id(data)
    assert (data / INSTANCE_ID_FILE).read_text().strip() == made
    assert instance_id(data) == made  # a restart finds it
    assert instance_id(tmp_path / "other") != made  # another worker's directory, another id
    assert instance_id(data, configured="eu-1") == "eu-1"  # GROUP_INSTANCE_ID wins
    (data / INSTANCE_ID_FILE).write_text("not valid!\n")
    assert valid_instance_id(instance_id(data))  # a damaged file is replaced


def test_the_last_member_id_is_remembered(tmp_path: Path) -> None:
    assert last_member_id(tmp_path) is None
    remember_member_id(tmp_path, "w-1-abc")
    assert last_member_id(tmp_path) == "w-1-abc"
    remember_member_id(tmp_path, "")
    assert last_member_id(tmp_path) == "w-1-abc"


def test_the_holder_of_an_instance_id_is_found_by_the_brokers_member_id() -> None:
    mine, longer, dynamic = member("w1"), member("w1-eu"), Member("faust-0.15.3-x", "c", "/h")
    assert holder_of([longer, dynamic, mine], "w1") == mine
    assert holder_of([longer, dynamic], "w1") is None
    assert holder_of([longer], "w1-eu") == longer


def test_a_join_is_refused_only_when_another_live_session_holds_the_id() -> None:
    crashed = member("w1")
    # Free, or held by this worker's own last session (a crash or a stop left it): join.
    assert conflict([], "w1", last=None) is None
    assert conflict([crashed, member("w2")], "w1", last=crashed.member_id) is None
    # Held by a session this worker never had: another worker has the same id.
    assert conflict([crashed], "w1", last=None) == crashed
    assert conflict([crashed], "w1", last="w1-someone-else") == crashed
    line = conflict_message("w1", crashed, 45.0)
    assert "w1" in line and crashed.member_id in line and "/10.0.0.1" in line
    assert "GROUP_INSTANCE_ID" in line and "45 s" in line and "\n" not in line


def test_the_data_dir_lock_keeps_a_second_worker_out(tmp_path: Path) -> None:
    data = tmp_path / "data" / "p"
    first = DataDirLock(data)
    first.acquire()
    # Another process: the real case (a flock is per open file, so this holds in one too).
    probe = (
        "import sys; from pathlib import Path; from steamprice.local_state import DataDirLock\n"
        "DataDirLock(Path(sys.argv[1])).acquire()"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(data)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0 and f"(pid {os.getpid()})" in done.stderr
    with pytest.raises(DataDirInUse) as err:
        DataDirLock(data).acquire()
    assert str(data) in str(err.value) and "DATA_DIR" in str(err.value)
    first.release()
    again = DataDirLock(data)
    again.acquire()  # released on close (and by the kernel when a process dies)
    again.release()


def test_the_consistency_error_becomes_one_line_with_table_dir_and_fix(tmp_path: Path) -> None:
    error = E_PERSISTED_OFFSET.format(TP("p1-app-state-changelog", 3), 1042, 17)
    line = consistency_message(error, {"p1-app-state-changelog": "app-state"}, tmp_path)
    assert "\n" not in line
    assert "table 'app-state'" in line and "partition 3" in line and "1042" in line
    assert str(tmp_path) in line
    assert "steamprice reset-local-state" in line and "DATA_DIR" in line
    # Whatever Faust's wording becomes, the line still says where and what to do.
    vague = consistency_message("inconsistent", {}, tmp_path)
    assert str(tmp_path) in vague and "steamprice reset-local-state" in vague


def test_a_local_copy_ahead_of_its_changelog_is_found_at_every_offset() -> None:
    a, b = ("p-app-state-changelog", 0), ("p-app-state-changelog", 1)
    assert ahead_of_changelog({a: 10, b: 3}, {a: 10, b: 7}) is None  # caught up, or behind
    assert ahead_of_changelog({a: 11}, {a: 10}) == (a, 11, 10)
    # Where Faust's own check (on the values' truth) looks away: an empty changelog (last
    # offset -1) under a copy that applied offset 0, and a changelog of one record (0).
    assert ahead_of_changelog({a: 0}, {a: -1}) == (a, 0, -1)
    assert ahead_of_changelog({a: None, b: 5}, {a: 3, b: 0}) == (b, 5, 0)
    assert ahead_of_changelog({a: -1}, {a: -1}) is None  # nothing read, nothing there


def test_reset_removes_the_tables_and_keeps_the_identity(tmp_path: Path) -> None:
    made = instance_id(tmp_path)
    remember_member_id(tmp_path, f"{made}-1")
    tables = tmp_path / "v1" / "tables"
    (tables / "p1-app-state-0.db").mkdir(parents=True)
    (tables / "p1-app-state-0.db" / "CURRENT").write_text("x")
    assert reset_tables(tmp_path) == [tables]
    assert not tables.exists() and (tmp_path / "v1").exists()
    assert instance_id(tmp_path) == made and last_member_id(tmp_path) == f"{made}-1"
    assert reset_tables(tmp_path) == []


def test_a_reset_is_refused_while_a_worker_runs_on_the_directory(tmp_path: Path) -> None:
    tables = tmp_path / "v1" / "tables"
    tables.mkdir(parents=True)
    running = DataDirLock(tmp_path)
    running.acquire()
    with pytest.raises(DataDirInUse):
        reset_local_tables(tmp_path)
    assert tables.exists()
    running.release()
    assert reset_local_tables(tmp_path) == [tables] and not tables.exists()
    assert reset_local_tables(tmp_path / "never-used") == []
    assert not (tmp_path / "never-used").exists()
