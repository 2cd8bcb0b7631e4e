"""A worker's own state: its data directory (locked while it runs), static group member id, tables.

Static membership (Kafka KIP-345): a consumer that joins with a ``group.instance.id`` the group
already knows takes over that member's partitions at once, without a rebalance, so a worker
restarted after a crash works again in seconds instead of waiting for the broker to give up on
the dead process (the session timeout). The id must be stable per worker and unique in the
group; by default it is made once, from the host name and a random suffix, and kept in the
worker's data directory (per app id and per worker), so a restart finds it and two workers
never share it: the directory is locked while a worker runs.

Kafka lets the newest holder of an id take it over; a second worker started with the id of a
live one would silently take its partitions, and the first would take them back (aiokafka 0.14
rejoins on ``UNKNOWN_MEMBER_ID``), again and again. So before a join without a member id the
worker looks at the group: a member holding its id that is not the one it was last (recorded in
the data directory) belongs to another live worker, and the joining one stops with one line.

The tables' local copies (RocksDB, under ``<data dir>/v<N>/tables``) are a cache of their
changelog topics. When they disagree with the cluster (Kafka was reset, or the directory belongs
to another pipeline), Faust stops recovery with a ``ConsistencyError``; the worker then exits
with one line saying so (:func:`consistency_message`), and ``steamprice reset-local-state``
deletes the copies (:func:`reset_tables`) so that the next start rebuilds them from Kafka.

Nothing here imports Faust: ``steamprice.kafka`` wires it into the consumer and the recovery.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

# A topic partition: Faust's ``TP`` is such a tuple.
P = TypeVar("P", bound=tuple[str, int])

INSTANCE_ID_FILE = "group-instance-id"
MEMBER_ID_FILE = "group-member-id"
LOCK_FILE = "worker.lock"
# Kafka's rule for a group.instance.id (the same as for topic names).
INSTANCE_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")
# The broker names a static member "<group.instance.id>-<random UUID>" (Kafka 2.3 to 4.1).
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


class DataDirInUse(RuntimeError):
    """Another worker runs on this data directory."""


def valid_instance_id(value: str) -> bool:
    return bool(INSTANCE_ID_RE.fullmatch(value)) and value not in (".", "..")


def new_instance_id(hostname: str, token: str | None = None) -> str:
    """``<host>-<8 hex>``: readable in ``kafka-consumer-groups --describe``, unique by chance."""
    host = re.sub(r"[^A-Za-z0-9._-]+", "-", hostname).strip("-.")[:64] or "worker"
    return f"{host}-{token or secrets.token_hex(4)}"


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


def instance_id(data_dir: Path, configured: str = "") -> str:
    """The worker's group instance id: ``configured`` (GROUP_INSTANCE_ID), else the one kept in
    the data directory, made and kept there on the worker's first start."""
    if configured:
        return configured
    path = data_dir / INSTANCE_ID_FILE
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        kept = ""
    if valid_instance_id(kept):
        return kept
    made = new_instance_id(socket.gethostname())
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, made)
    return made


def last_member_id(data_dir: Path) -> str | None:
    """The member id this worker had in the group last (None: never joined from here)."""
    try:
        return (data_dir / MEMBER_ID_FILE).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def remember_member_id(data_dir: Path, member_id: str) -> None:
    if member_id and member_id != last_member_id(data_dir):
        _write_atomically(data_dir / MEMBER_ID_FILE, member_id)


@dataclass(frozen=True)
class Member:
    """One member of a consumer group, as DescribeGroups tells it."""

    member_id: str
    client_id: str
    client_host: str


def holder_of(members: Iterable[Member], instance: str) -> Member | None:
    """The member of the group that holds the static id ``instance``, if any."""
    pattern = re.compile(re.escape(instance) + "-" + _UUID)
    return next((m for m in members if pattern.fullmatch(m.member_id)), None)


def conflict(members: Iterable[Member], instance: str, last: str | None) -> Member | None:
    """Another worker holding ``instance`` (None: free, or held by this worker's last session,
    which a crash left behind and the join takes over)."""
    holder = holder_of(members, instance)
    return holder if holder is not None and holder.member_id != last else None


def conflict_message(instance: str, holder: Member, session_timeout: float) -> str:
    return (
        f"Group instance id {instance!r} is held by another live worker (member"
        f" {holder.member_id} from {holder.client_host}): two workers must never share one."
        f" Give each worker its own GROUP_INSTANCE_ID (or leave it unset: each data directory"
        f" makes its own); if that worker is gone for good, start this one again after"
        f" BROKER_SESSION_TIMEOUT ({session_timeout:g} s), when the broker has dropped it."
    )


class DataDirLock:
    """An exclusive lock on a data directory for the life of the process (released on exit,
    even on SIGKILL: it is a ``flock`` on an open file)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._file: int | None = None

    def acquire(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"Data directory {self.data_dir} is in use by another worker (pid {holder}):"
                " each worker needs a DATA_DIR of its own (stop that worker first, or run"
                " this one from another directory or with another DATA_DIR)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self._file = fd

    def release(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None


def ahead_of_changelog(
    offsets: Mapping[P, int | None], highwaters: Mapping[P, int | None]
) -> tuple[P, int, int] | None:
    """A changelog partition whose local copy has read beyond its last offset, if any:
    (partition, offset read, last offset). Every value counts, 0 and -1 (empty) included."""
    for tp, offset in offsets.items():
        highwater = highwaters.get(tp)
        if offset is not None and highwater is not None and offset > highwater:
            return tp, offset, highwater
    return None


_TP_RE = re.compile(r"TP\(topic='([^']+)', partition=(\d+)\)")
_OFFSETS_RE = re.compile(r"\((-?\d+) > (-?\d+)\)")


def consistency_message(error: str, tables: Mapping[str, str], data_dir: Path) -> str:
    """One line for Faust's ``ConsistencyError`` (``error``, its text): the table, the data
    directory and the fix. ``tables`` maps changelog topic names to table names."""
    tp = _TP_RE.search(error)
    offsets = _OFFSETS_RE.search(error)
    topic, partition = (tp.group(1), tp.group(2)) if tp else ("?", "?")
    table = tables.get(topic, topic)
    where = (
        f" has read its changelog {topic} partition {partition} up to offset"
        f" {offsets.group(1)}, beyond the topic's last offset {offsets.group(2)}"
        if offsets
        else f" is ahead of its changelog {topic} partition {partition}"
    )
    return (
        f"Local table state in {data_dir} does not match Kafka: table {table!r}{where}"
        " (Kafka was reset, or this directory holds another pipeline's state). Fix: run"
        " `steamprice reset-local-state` with this worker's settings (the tables are rebuilt"
        " from their changelogs at the next start), or give this pipeline a DATA_DIR of its own."
    )


def table_dirs(data_dir: Path) -> list[Path]:
    """The tables' local copies under a data directory (Faust: ``v<N>/tables``)."""
    return sorted(p for p in data_dir.glob("v*/tables") if p.is_dir())


def reset_tables(data_dir: Path) -> list[Path]:
    """Delete the tables' local copies (only those: the group identity stays); the paths."""
    removed = table_dirs(data_dir)
    for path in removed:
        shutil.rmtree(path)
    return removed


def reset_local_tables(data_dir: Path) -> list[Path]:
    """:func:`reset_tables`, refused (:class:`DataDirInUse`) while a worker runs on the
    directory: a running worker's tables are open, and it would write them again."""
    if not data_dir.is_dir():
        return []
    lock = DataDirLock(data_dir)
    lock.acquire()
    try:
        return reset_tables(data_dir)
    finally:
        lock.release()
