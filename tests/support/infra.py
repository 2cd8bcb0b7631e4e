"""The real local stack for tests: Kafka and MariaDB of `make up`, private ones to break, polling."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiomysql
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

if TYPE_CHECKING:
    from tests.support.processes import Pipeline

KAFKA = os.environ.get("TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


async def sql(
    statement: str,
    args: Any = None,
    *,
    db: str | None = None,
    server: dict[str, Any] = MYSQL,
    more: Sequence[tuple[str, Any]] = (),
) -> list[tuple[Any, ...]]:
    """Run ``statement`` (then ``more`` statements) on a fresh autocommit connection; its rows."""
    conn = await aiomysql.connect(**server, **({"db": db} if db else {}), autocommit=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute(statement, args)
            rows = list(await cur.fetchall())
            for other, other_args in more:
                await cur.execute(other, other_args)
            return rows
    finally:
        conn.close()


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


async def stop_process(
    proc: asyncio.subprocess.Process | None, sig: int = signal.SIGTERM, timeout: float = 60.0
) -> int | None:
    """Send ``sig`` and wait for the exit; SIGKILL after ``timeout``. The exit code, if any."""
    if proc is None or proc.returncode is not None:
        return proc.returncode if proc else None
    proc.send_signal(sig)
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        return await proc.wait()


async def create_topic(name: str, partitions: int, kafka: str = KAFKA) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def delete_topic(name: str, kafka: str = KAFKA) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def delete_topics_of(app_id: str, kafka: str = KAFKA) -> list[str]:
    """Delete every topic of one APP_ID (``<app_id>.<name>`` and Faust's ``<app_id>-...``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith((f"{app_id}.", f"{app_id}-"))]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def produce_raw(
    bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes | None]]
) -> int:
    """Send raw (key, value) pairs fast (batched, every send awaited at the end); the count."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in items]
        await producer.flush()
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def topic_ends(pipeline: Pipeline) -> dict[str, int]:
    """Messages ever written to each of the pipeline's topics (changelogs included)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=pipeline.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        tps = [
            TopicPartition(t, p)
            for t in cluster.topics()
            if t.startswith(pipeline.app_id)
            for p in cluster.partitions_for_topic(t) or ()
        ]
        ends = await consumer.end_offsets(tps) if tps else {}
        out: dict[str, int] = {}
        for tp, end in ends.items():
            out[tp.topic] = out.get(tp.topic, 0) + end
        return out
    finally:
        await consumer.stop()


def group_of(pipeline: Pipeline, short: str) -> str:
    """The consumer group that reads a topic: the seed intake's own for ``app-ids``
    (``steamprice.seeds``), else the workers' Faust group (the APP_ID)."""
    return f"{pipeline.app_id}-intake" if short == "app-ids" else pipeline.app_id


async def committed_offsets(pipeline: Pipeline, short: str) -> dict[int, tuple[int, int]]:
    """Per partition of a topic: the offset the group that reads it committed, the end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=pipeline.kafka,
        group_id=group_of(pipeline, short),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        name = pipeline.topic(short)
        parts = consumer.partitions_for_topic(name) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(name) or set()
        tps = [TopicPartition(name, p) for p in sorted(parts)]
        end = await consumer.end_offsets(tps)
        return {tp.partition: (await consumer.committed(tp) or 0, end[tp]) for tp in tps}
    finally:
        await consumer.stop()


async def topic_values(pipeline: Pipeline, short: str) -> dict[int, list[tuple[int, Any]]]:
    """Per partition of a topic: every record's offset and JSON value, from the start to the end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=pipeline.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        name = pipeline.topic(short)
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: dict[int, list[tuple[int, Any]]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + 60
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: not read to its end in 60 s")
            batch = await consumer.getmany(*left, timeout_ms=1000)
            for tp, messages in batch.items():
                out[tp.partition].extend(
                    (m.offset, json.loads(m.value)) for m in messages if m.value is not None
                )
            left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
        return out
    finally:
        await consumer.stop()


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

    async def query(self, db: str, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        return await sql(statement, args, db=db, server=self.mysql)


def _os_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


# ---------------------------------------------------------------------------------------------
# Fault-tolerance suite (tests/integration/test_faults_*.py): a private broker, a private
# database user, ground truth for sweeps, and the greps for secrets.


def _kafka_lib() -> Path:
    """The broker's jars, where scripts/stack.sh caches them (one version, read from there)."""
    found = re.search(r"^KAFKA_VERSION=(\S+)$", (REPO / "scripts/stack.sh").read_text(), re.M)
    assert found, "scripts/stack.sh no longer names KAFKA_VERSION"
    cache = Path(os.environ.get("STEAMPRICE_CACHE", Path.home() / ".cache" / "steamprice"))
    return cache / f"kafka-{found.group(1)}" / "lib"


class PrivateKafka:
    """A single-node KRaft broker of a test's own (temp data dir, free ports), to stop at will.

    Configured and started like the shared one (scripts/stack.sh: same jars, same properties
    with other ports); the shared broker on 9092 is never touched. The data dir survives
    :meth:`stop`, so :meth:`start` again is a broker restart with every topic and offset kept.
    """

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "private-kafka"
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = self.dir / "kafka.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def _java(self, *args: str, jvm: Sequence[str] = ()) -> list[str]:
        return [
            "java", *jvm, f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp", f"{_kafka_lib()}/*", *args,
        ]  # fmt: skip

    async def start(self, timeout: float = 120.0) -> None:
        lib = _kafka_lib()
        if not lib.is_dir():
            raise AssertionError(f"no Kafka jars in {lib}: run scripts/stack.sh install")
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        template = (REPO / "scripts/stack/server.properties.in").read_text()
        props = (
            template.replace("@LOG_DIR@", str(data))
            .replace(":9092", f":{self.port}")
            .replace(":9093", f":{self.controller_port}")
        )
        config = self.dir / "server.properties"
        config.write_text(props)
        shutil.copy(REPO / "scripts/stack/log4j2.properties", self.dir / "log4j2.properties")
        if not (data / "meta.properties").exists():
            cluster_id = "-"
            while cluster_id.startswith("-"):
                cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode()[:22]
            fmt = await asyncio.create_subprocess_exec(
                *self._java("kafka.tools.StorageTool", "format", "-t", cluster_id,
                            "-c", str(config), "--ignore-formatted"),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await fmt.communicate()
            if fmt.returncode != 0:
                raise AssertionError(f"formatting the private broker failed:\n{out.decode()}")
        with self.log_path.open("ab") as log:
            jvm = (
                "-Xms128m", "-Xmx384m", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true", f"-Dkafka.logs.dir={self.dir}",
            )  # fmt: skip
            self.proc = await asyncio.create_subprocess_exec(
                *self._java("kafka.Kafka", str(config), jvm=jvm),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

        async def answers() -> bool:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"private broker exited:\n{self.log()[-3000:]}")
            try:  # the port opens once the broker is unfenced; no client noise before that
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
            try:
                await producer.start()
            except Exception:
                return False
            finally:
                await producer.stop()
            return True

        await wait_for(f"private broker on port {self.port}", answers, timeout=timeout, every=0.5)

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM (a clean shutdown) or SIGKILL (a crash), and wait until the JVM is gone."""
        await stop_process(self.proc, sig, 30)


class MySQLUser:
    """A MariaDB user of a test's own, with a password, allowed only its pipeline's database.

    Created on the shared server (a user is cheap and touches nobody else's data) and dropped
    by :meth:`drop`; the password is what the secrets greps look for.
    """

    def __init__(self, db: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.db = db
        self.name = f"it_u_{tag}"
        self.password = f"pw-{uuid.uuid4().hex}"

    @property
    def env(self) -> dict[str, str]:
        return {"MYSQL_USER": self.name, "MYSQL_PASSWORD": self.password}

    async def _run(
        self, first: tuple[str, Sequence[Any]], *more: tuple[str, Sequence[Any]]
    ) -> None:
        await sql(*first, more=more)

    async def create(self) -> None:
        await self._run(
            ("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (self.name, self.password)),
            (f"GRANT ALL PRIVILEGES ON `{self.db}`.* TO %s@'127.0.0.1'", (self.name,)),
        )

    async def drop(self) -> None:
        await self._run(("DROP USER IF EXISTS %s@'127.0.0.1'", (self.name,)))
