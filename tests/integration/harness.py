"""Real worker processes against the local stack, plus polling helpers (no bare sleeps)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiomysql
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

KAFKA = os.environ.get("TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_problem() -> str | None:
    """Why the local stack cannot be used, or None when Kafka and MariaDB answer."""
    for name, port in (("Kafka", 9092), ("MariaDB", 3306)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            return f"{name} is not listening on 127.0.0.1:{port}: run `make up` first"
    return None


async def wait_for(
    what: str, probe: Callable[[], Awaitable[T]], timeout: float = 60.0, every: float = 0.25
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what}; last value: {last!r}"
    )


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
        self.workers: list[Worker] = []

    def topic(self, short: str) -> str:
        return f"{self.app_id}.{short}"

    def worker(self, name: str = "w1", **env: str) -> Worker:
        w = Worker(self, name, env)
        self.workers.append(w)
        return w

    async def cli(self, *args: str, stdin: bytes | None = None) -> str:
        """Run ``steamprice ARGS`` with this pipeline's settings; returns its output."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "steamprice",
            *args,
            env={**self.env, "DATA_DIR": str(self.tmp / "cli-data")},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.tmp,
        )
        out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout=120)
        text = out.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise AssertionError(f"steamprice {' '.join(args)} exited {proc.returncode}:\n{text}")
        return text

    async def send_raw(self, short: str, values: list[bytes], key: bytes | None = None) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
        await producer.start()
        try:
            for v in values:
                await producer.send_and_wait(self.topic(short), v, key=key)
        finally:
            await producer.stop()

    async def read_topic(self, short: str) -> list[tuple[bytes | None, bytes | None]]:
        """Every message now in a topic (all partitions), oldest first per partition."""
        consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
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

    async def query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        try:
            conn = await aiomysql.connect(**MYSQL, db=self.db, autocommit=True)
        except Exception:  # the database may not exist yet
            return []
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql, args)
                return list(await cur.fetchall())
        finally:
            conn.close()

    async def close(self) -> None:
        for w in self.workers:
            await w.stop()
        conn = await aiomysql.connect(**MYSQL, autocommit=True)
        try:
            async with conn.cursor() as cur:
                await cur.execute(f"DROP DATABASE IF EXISTS `{self.db}`")
        finally:
            conn.close()


class Worker:
    """A ``steamprice worker`` subprocess with its log in a file."""

    def __init__(self, pipeline: Pipeline, name: str, env: dict[str, str]) -> None:
        self.pipeline = pipeline
        self.name = name
        self.port = free_port()
        self.data_dir = pipeline.tmp / f"{name}-data"
        self.log_path = pipeline.tmp / f"{name}.log"
        self.env = {
            **pipeline.env,
            "WEB_PORT": str(self.port),
            "DATA_DIR": str(self.data_dir),
            **env,
        }
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
            cwd=self.pipeline.tmp,
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

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()


class PrivateMariaDB:
    """A mariadbd of a test's own (temp datadir, free port), for tests that must break it.

    The shared MariaDB on 3306 is never stopped; this one is, by its own process handle.
    root may log in over TCP with an empty password, like on the shared server.
    """

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "private-mariadb"
        self.datadir = self.dir / "data"
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def mysql(self) -> dict[str, Any]:
        return {**MYSQL, "port": self.port}

    async def start(self, timeout: float = 60.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = self.dir / "mariadbd.log"
        if not (self.datadir / "mysql").is_dir():
            install = await asyncio.create_subprocess_exec(
                "mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal", "--skip-test-db",
                "--skip-name-resolve", f"--user={_os_user()}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await install.communicate()
            if install.returncode != 0:
                raise AssertionError(f"mariadb-install-db failed:\n{out.decode()[-3000:]}")
        with log.open("ab") as out_file:
            self.proc = await asyncio.create_subprocess_exec(
                "mariadbd", "--no-defaults", f"--datadir={self.datadir}",
                f"--socket={self.dir / 'mariadb.sock'}", f"--port={self.port}",
                "--bind-address=127.0.0.1", "--skip-name-resolve", f"--user={_os_user()}",
                "--skip-log-bin", "--innodb-buffer-pool-size=32M",
                "--character-set-server=utf8mb4",
                stdout=out_file, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip

        async def answers() -> bool:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"mariadbd exited:\n{log.read_text()[-3000:]}")
            try:
                conn = await aiomysql.connect(**self.mysql, connect_timeout=2)
            except Exception:
                return False
            conn.close()
            return True

        await wait_for(f"private mariadbd on port {self.port}", answers, timeout=timeout)

    async def kill(self) -> None:
        """Stop it as a crash would (SIGKILL): no goodbye to the clients, crash recovery next."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                await self.kill()

    async def query(self, db: str, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        conn = await aiomysql.connect(**self.mysql, db=db, autocommit=True)
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql, args)
                return list(await cur.fetchall())
        finally:
            conn.close()


def _os_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
