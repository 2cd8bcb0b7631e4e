"""Putting app ids on the seed topic, without Faust: what ``steamprice seed`` does most of the time.

``steamprice seed`` went through Faust's command line: importing the whole app (agents, pages,
the Discord notifier, aiohttp) and starting it made a command whose work is a few Kafka record
batches take 2.6 s for one id and 3.0-3.4 s for 50,000 (0.2 s and 0.6-0.75 s here).
:func:`quick_seed` does that work with aiokafka alone when it can: app ids given as arguments
or ``--file``, and every topic of the pipeline already there (a worker or an earlier ``seed``
created them). Anything else (``--all``, ``--help``, an option it does not know, a topic
missing, the broker not answering) goes the Faust way, which also creates the topics with their
partitions. Both send with :func:`send_seed_batches` and print the same lines.

Nothing here imports Faust (``steamprice.schedule`` and ``steamprice.batches`` re-export the
seed parser and the partitioner from here).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2

MAX_APP_ID = 2**31 - 1
MAX_SEED_BYTES = 1024
PROGRESS_EVERY_SECONDS = 1.0
# The topics of one pipeline (``<APP_ID>.<name>``), as ``steamprice.topics.ALL_TOPICS`` declares
# them (a unit test holds the two together).
TOPIC_NAMES = (
    "app-ids",
    "app-ids-failed",
    "schedule",
    "crawl-requests",
    "prices-raw",
    "prices-normalized",
    "price-changes",
    "end-date-asks",
    "alert-rules",
)
# How long the quick path waits for the broker before it leaves the work to the Faust path.
CONNECT_TIMEOUT_SECONDS = 10.0


class BadSeed(ValueError):
    """A seed-topic message that is not an app id; the message is the reason."""


def parse_seed(value: bytes | str | int | dict[str, object] | None) -> int:
    """Accept a bare ``730`` or ``{"app_id": 730}``; raise :class:`BadSeed` for anything else."""
    if value is None:
        raise BadSeed("empty message")
    if isinstance(value, bytes):
        if len(value) > MAX_SEED_BYTES:
            raise BadSeed(f"message too large ({len(value)} bytes)")
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadSeed("message is not UTF-8") from None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise BadSeed("empty message")
        try:
            value = json.loads(text)
        except ValueError:
            raise BadSeed('not JSON: expected 730 or {"app_id": 730}') from None
        except RecursionError:
            # ~1000 nested brackets fit under MAX_SEED_BYTES. Uncaught, it crashed the intake
            # agent, lost the message without a reason and stalled the seed topic while Faust
            # restarted the agent (found by tests/integration/test_faults_input.py).
            raise BadSeed("JSON nested too deeply") from None
    if isinstance(value, dict):
        if "app_id" not in value:
            raise BadSeed("object without an app_id field")
        value = value["app_id"]  # type: ignore[assignment]
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadSeed(f"app_id must be an integer, not {type(value).__name__}")
    if not 1 <= value <= MAX_APP_ID:
        raise BadSeed(f"app_id {value} is out of range 1..{MAX_APP_ID}")
    return value


def partition_for(app_id: int, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a record keyed by ``app_id``.

    Topics are keyed by the app id serialized as JSON (``730`` -> ``b"730"``); the Java client,
    aiokafka and Faust all take murmur2 of the key bytes, made positive, modulo the count.
    """
    hashed: int = murmur2(str(app_id).encode())
    return (hashed & 0x7FFFFFFF) % partitions


def by_partition(app_ids: Iterable[int], partitions: int) -> dict[int, list[int]]:
    """App ids grouped by their partition (order kept within a group)."""
    groups: dict[int, list[int]] = {}
    for app_id in app_ids:
        groups.setdefault(partition_for(app_id, partitions), []).append(app_id)
    return groups


class Progress:
    """A one-line progress display on stderr for long inputs (silent for short ones)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0
        self._last = time.monotonic()
        self._shown = False

    def tick(self, n: int = 1) -> None:
        self.count += n
        if time.monotonic() - self._last >= PROGRESS_EVERY_SECONDS:
            self._last = time.monotonic()
            self._shown = True
            print(f"\r{self.what}: {self.count:,}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self._shown:
            print(f"\r{self.what}: {self.count:,}", file=sys.stderr, flush=True)


def ids_from_lines(lines: Iterable[str], source: str) -> Iterator[int]:
    """App ids from text, one per line; blank lines and ``#`` comments are skipped."""
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            yield parse_seed(text)
        except BadSeed as exc:
            raise BadSeed(f"{source}:{number}: {exc}") from None


_stdin: list[str] = []  # standard input, once read (the Faust path may read it after ours)


def ids_from_file(path: str) -> list[int]:
    """``--file``: a path, or ``-`` for standard input (a CLI reads it before any I/O starts)."""
    if path == "-":
        if not _stdin:
            _stdin.append(sys.stdin.read())
        text = _stdin[0]
    else:
        text = Path(path).read_text(encoding="utf-8")
    return list(ids_from_lines(text.splitlines(), path))


def sent_line(topic: str, ids: Sequence[int], unique: Sequence[int]) -> str:
    """What ``steamprice seed`` prints once the broker has every seed."""
    dropped = len(ids) - len(unique)
    return f"Sent {len(unique)} app ids to {topic}" + (
        f" ({dropped} duplicates dropped)" if dropped else ""
    )


async def send_seed_batches(
    kafka: Any, topic: str, app_ids: Sequence[int], sent: Callable[[int], object] = lambda n: None
) -> int:
    """Seeds on the seed topic through an aiokafka producer, one record per app keyed by its id,
    handed to Kafka in batches.

    Each app is a record of its own, keyed and valued ``b"730"`` and put in the partition the
    producer's partitioner picks for that key (``partition_for``, over the topic's partitions as
    the broker has them), as a send per app did; what is batched is the handing over: one Kafka
    record batch per partition at a time. Sent one by one through Faust's producer, 50,000 seeds
    took 4 s of CPU, on the machine where the worker that reads them runs. ``sent(n)`` is
    called as batches go out (progress). Returns once the broker has every record.
    """
    count = len(await kafka.partitions_for(topic))
    delivered = []
    for partition, ids in by_partition(app_ids, count).items():
        batch, size = kafka.create_batch(), 0
        for app_id in ids:
            raw = str(app_id).encode()
            if batch.append(timestamp=None, key=raw, value=raw) is None:  # full: send it
                delivered.append(await kafka.send_batch(batch, topic, partition=partition))
                sent(size)
                batch, size = kafka.create_batch(), 0
                if batch.append(timestamp=None, key=raw, value=raw) is None:
                    raise ValueError(f"app id {app_id} does not fit a Kafka record batch")
            size += 1
        delivered.append(await kafka.send_batch(batch, topic, partition=partition))
        sent(size)
    await asyncio.gather(*delivered)
    return len(app_ids)


def seed_arguments(argv: Sequence[str]) -> tuple[list[str], str | None] | None:
    """``seed``'s arguments as (app ids, --file) when the quick path takes them, else None."""
    ids: list[str] = []
    file_: str | None = None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--file" and args and file_ is None:
            file_ = args.pop(0)
        elif arg.startswith("--file=") and file_ is None:
            file_ = arg.split("=", 1)[1]
        elif arg.startswith("-") and arg != "-":
            return None  # --all, --help, anything else: Faust's command line
        else:
            ids.append(arg)
    return ids, file_


async def _send_quickly(
    servers: str, names: Sequence[str], ids: list[int], progress: Progress
) -> bool:
    """Send ``ids`` when every topic in ``names`` exists; False (nothing sent) otherwise."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    try:
        await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_SECONDS)
    except Exception:
        await producer.stop()
        return False
    try:
        # A metadata request for every topic creates none (asking for the seed topic alone
        # would make a broker with auto-creation on create it with its default partitions).
        cluster = await producer.client.fetch_all_metadata()
        if not set(names) <= cluster.topics():
            return False
        await send_seed_batches(producer, names[0], ids, progress.tick)
        return True
    finally:
        await producer.stop()


def quick_seed(argv: Sequence[str]) -> bool:
    """``steamprice seed ARGV`` without Faust; False when it must go the Faust way (nothing
    was sent). Exits on bad input as the Faust path does."""
    parsed = seed_arguments(argv)
    if parsed is None:
        return False
    from steamprice.settings import load_settings

    settings = load_settings()
    args, file_ = parsed
    try:
        ids = list(ids_from_lines(args, "argument"))
        if file_:
            ids.extend(ids_from_file(file_))
    except (BadSeed, OSError) as exc:
        raise SystemExit(f"steamprice seed: {exc}") from None
    if not ids:
        raise SystemExit("steamprice seed: no app ids given (APP_ID ..., --file PATH or --all)")
    unique = list(dict.fromkeys(ids))
    names = [settings.topic_name(name) for name in TOPIC_NAMES]
    progress = Progress("Sent")
    try:
        if not asyncio.run(_send_quickly(settings.bootstrap_servers, names, unique, progress)):
            return False
    except Exception as exc:  # the broker went away mid-send: say so, no traceback
        raise SystemExit(
            f"steamprice seed: sending to Kafka at {settings.bootstrap_servers} failed after"
            f" {progress.count:,} of {len(unique):,} app ids ({exc.__class__.__name__}: {exc});"
            " seeding them again is harmless"
        ) from None
    progress.done()
    print(sent_line(names[0], ids, unique), flush=True)
    return True
