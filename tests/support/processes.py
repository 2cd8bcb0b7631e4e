"""Real pipeline processes: an isolated Pipeline (topics, database, data dirs) and its Workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiomysql
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from tests.support.infra import (
    KAFKA,
    MYSQL,
    delete_topics_of,
    free_port,
    produce_raw,
    sql,
    stop_process,
    wait_for,
)

T = TypeVar("T")
# MySQL error codes: ER_BAD_DB_ERROR, and the client's own (connection) errors from 2000 up.
UNKNOWN_DATABASE, CLIENT_ERRORS = 1049, 2000


class Pipeline:
    """One isolated pipeline: its own APP_ID (topic prefix), database, data dir and web port."""

    def __init__(self, tmp: Path, **env: str) -> None:
        tag = uuid.uuid4().hex[:10]
        self.app_id = f"it-{tag}"
        self.db = f"it_{tag}"
        self.tmp = tmp
        self.env = {
            **os.environ,
            "KAFKA_BROKER": f"kafka://{KAFKA}",
            "APP_ID": self.app_id,
            "MYSQL_DB": self.db,
            "MYSQL_HOST": MYSQL["host"],
            "MYSQL_PORT": str(MYSQL["port"]),
            "MYSQL_USER": MYSQL["user"],
            "MYSQL_PASSWORD": MYSQL["password"],
            "TOPIC_PARTITIONS": "4",
            "SCHEDULE_TICK_SECONDS": "1",
            "STEAM_BATCH_WAIT_SECONDS": "0.5",
            "SINK_BATCH_SECONDS": "0.3",
            "STEAM_MAX_REQUESTS_PER_MINUTE": "600",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        # The broker this pipeline's own producers and consumers use (a private one when the
        # test passes KAFKA_BROKER).
        self.kafka = self.env["KAFKA_BROKER"].split("://", 1)[-1]
        self.workers: list[Worker] = []

    def topic(self, short: str) -> str:
        return f"{self.app_id}.{short}"

    def worker(self, name: str = "w1", workdir: Path | None = None, **env: str) -> Worker:
        w = Worker(self, name, env, workdir)
        self.workers.append(w)
        return w

    async def cli(self, *args: str, stdin: bytes | None = None, workdir: Path | None = None) -> str:
        """Run ``steamprice ARGS`` with this pipeline's settings; returns its output.

        From ``workdir`` (a worker's) with the default ``DATA_DIR``, else from a directory of
        its own."""
        code, text = await self.run_cli(*args, stdin=stdin, workdir=workdir)
        if code != 0:
            raise AssertionError(f"steamprice {' '.join(args)} exited {code}:\n{text}")
        return text

    async def cli_fails(self, *args: str, status: int = 1) -> str:
        """Run ``steamprice ARGS``, which must exit with ``status``; returns its output."""
        got, text = await self.run_cli(*args)
        if got != status:
            raise AssertionError(f"steamprice {' '.join(args)} exited {got}, not {status}:\n{text}")
        return text

    async def run_cli(
        self, *args: str, stdin: bytes | None = None, workdir: Path | None = None
    ) -> tuple[int, str]:
        """Like :meth:`cli`, for a command that may fail: its exit code and output."""
        env = self.env if workdir else {**self.env, "DATA_DIR": str(self.tmp / "cli-data")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "steamprice",
            *args,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=workdir or self.tmp,
        )
        out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout=120)
        assert proc.returncode is not None
        return proc.returncode, out.decode("utf-8", "replace")

    async def send_raw(self, short: str, values: list[bytes], key: bytes | None = None) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.kafka)
        await producer.start()
        try:
            for v in values:
                await producer.send_and_wait(self.topic(short), v, key=key)
        finally:
            await producer.stop()

    async def read_topic(self, short: str) -> list[tuple[bytes | None, bytes | None]]:
        """Every message now in a topic (all partitions), oldest first per partition."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka, enable_auto_commit=False)
        await consumer.start()
        try:
            name = self.topic(short)
            parts = consumer.partitions_for_topic(name)
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(name) or set()
            tps = [TopicPartition(name, p) for p in sorted(parts)]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            out: list[tuple[bytes | None, bytes | None]] = []
            for tp in tps:
                while await consumer.position(tp) < end[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for records in batch.values():
                        out.extend((r.key, r.value) for r in records)
            return out
        finally:
            await consumer.stop()

    async def query(self, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        try:
            return await sql(statement, args, db=self.db)
        except aiomysql.OperationalError as exc:
            # Not there yet (the worker creates the database) or not reachable: nothing to read.
            if exc.args and (exc.args[0] == UNKNOWN_DATABASE or exc.args[0] >= CLIENT_ERRORS):
                return []
            raise

    async def close(self) -> None:
        for w in self.workers:
            await w.stop()
        await sql(f"DROP DATABASE IF EXISTS `{self.db}`")
        if self.kafka == KAFKA:
            # The shared broker keeps no pipeline's topics: left behind, a few days of test runs
            # gave it 16,588 partitions (5.7 GB), a minute to start and every run a slower broker.
            # A private broker goes with its test.
            try:
                await delete_topics_of(self.app_id, self.kafka)
            except (KafkaError, OSError) as exc:
                print(f"could not delete the topics of {self.app_id}: {exc!r}")


class Worker:
    """A ``steamprice worker`` subprocess with its log in a file.

    Each worker runs in a working directory of its own with the default ``DATA_DIR``, as an
    operator runs one (the tests exercise the default, not a path of their choosing).
    """

    def __init__(
        self, pipeline: Pipeline, name: str, env: dict[str, str], workdir: Path | None = None
    ) -> None:
        self.pipeline = pipeline
        self.name = name
        self.port = free_port()
        self.workdir = workdir or pipeline.tmp / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = pipeline.tmp / f"{name}.log"
        self.env = {**pipeline.env, "WEB_PORT": str(self.port), **env}
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, wait: bool = True) -> None:
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "steamprice",
            "worker",
            "-l",
            "info",
            env=self.env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        if wait:
            await self.wait_consuming()

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""

    async def health(self) -> dict[str, Any] | None:
        if self.proc is not None and self.proc.returncode is not None:
            raise AssertionError(
                f"worker {self.name} exited {self.proc.returncode}:\n" + self.log()[-5000:]
            )
        try:
            async with aiohttp.ClientSession() as s, s.get(f"{self.url}/health") as r:
                return dict(await r.json())
        except (aiohttp.ClientError, json.JSONDecodeError, OSError):
            return None

    async def wait_consuming(self, timeout: float = 90.0) -> None:
        async def consuming() -> bool:
            h = await self.health()
            return bool(h and h.get("consuming"))

        await wait_for(f"worker {self.name} to consume", consuming, timeout=timeout, every=0.5)

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as s, s.get(f"{self.url}/metrics") as r:
            return await r.text()

    @property
    def data_dir(self) -> Path:
        """Where the worker keeps its state: the default ``DATA_DIR``, unless the test set one."""
        return self.workdir / self.env.get("DATA_DIR", f"data/{self.env['APP_ID']}")

    async def exited(self, timeout: float = 90.0) -> int:
        """Wait for the worker to end on its own; its exit code."""
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def partitions(self, short: str = "schedule") -> set[int]:
        """The partitions of a pipeline topic this worker owns (Faust's ``/assignment/``)."""
        async with aiohttp.ClientSession() as s, s.get(f"{self.url}/assignment/") as r:
            actives = (await r.json())["actives"]
        return set(actives.get(self.pipeline.topic(short), ()))

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        return await stop_process(self.proc, sig, timeout)


async def seed_apps(pipeline: Pipeline, apps: Iterable[int]) -> int:
    """Put app ids on the seed topic as ``kcat`` would (a bare number, keyed by itself)."""
    items = [(str(a).encode(), str(a).encode()) for a in apps]
    return await produce_raw(pipeline.kafka, pipeline.topic("app-ids"), items)


# (status, currency, initial, final, discount) of one app in one region, as price_current has it.
