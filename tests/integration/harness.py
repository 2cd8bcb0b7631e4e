"""Real worker processes against the local stack, plus polling helpers (no bare sleeps)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiomysql
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.fakes import FakeDiscord, FakeSteam

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
        return await stop_process(self.proc, sig, timeout)


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


# ---------------------------------------------------------------------------------------------
# Fault-tolerance suite (tests/integration/test_faults_*.py): a private broker, a private
# database user, ground truth for sweeps, and the greps for secrets.

SWEEP_CURRENT = (
    "SELECT app_id, cc, status, currency, initial_price, final_price, discount_percent"
    " FROM price_current"
)
SWEEP_CHANGES = (
    "SELECT app_id, cc, kind, old_initial, old_final, old_discount, new_initial, new_final,"
    " new_discount FROM price_changes"
)
_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
# Every page a worker serves: ours, and Faust's own (those switched off answer 404).
WEB_PAGES = (
    "/", "/health", "/metrics", "/stats/", "/assignment/", "/router/", "/graph/", "/table/",
    "/performance/",
)  # fmt: skip


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample of a Prometheus text page (its labels exactly ``labels``), None if absent."""
    for line in text.splitlines():
        m = _SAMPLE_RE.match(line)
        if m and m.group(1) == name and dict(_LABEL_RE.findall(m.group(2) or "")) == labels:
            return float(m.group(3))
    return None


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

    async def _run(self, *statements: tuple[str, Sequence[Any]]) -> None:
        conn = await aiomysql.connect(**MYSQL, autocommit=True)
        try:
            async with conn.cursor() as cur:
                for sql, args in statements:
                    await cur.execute(sql, args)
        finally:
            conn.close()

    async def create(self) -> None:
        await self._run(
            ("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (self.name, self.password)),
            (f"GRANT ALL PRIVILEGES ON `{self.db}`.* TO %s@'127.0.0.1'", (self.name,)),
        )

    async def drop(self) -> None:
        await self._run(("DROP USER IF EXISTS %s@'127.0.0.1'", (self.name,)))


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


async def seed_apps(pipeline: Pipeline, apps: Iterable[int]) -> int:
    """Put app ids on the seed topic as ``kcat`` would (a bare number, keyed by itself)."""
    items = [(str(a).encode(), str(a).encode()) for a in apps]
    return await produce_raw(pipeline.kafka, pipeline.topic("app-ids"), items)


# (status, currency, initial, final, discount) of one app in one region, as price_current has it.
PriceRow = tuple[str, str | None, int | None, int | None, int | None]
# (app, cc, kind, old_initial, old_final, old_discount, new_initial, new_final, new_discount).
ChangeRow = tuple[Any, ...]
_NOT_PRICED = (None, None, None, None)


class Catalog:
    """Prices of a block of apps in a FakeSteam, changed in rounds, and the ground truth.

    :attr:`truth` is what ``price_current`` must hold, :attr:`changes` every row
    ``price_changes`` must hold (each once). Mixes priced, discounted, unpriced (``data: []``)
    and unknown (``success:false``) apps; :meth:`mutate` makes one change of a known kind per
    region of a share of the apps, computed here independently of the pipeline's rules.
    """

    def __init__(
        self, steam: Any, apps: Iterable[int], ccs: Sequence[str] = ("us",), seed: int = 8
    ) -> None:
        from tests.fakes.steam import currency_for

        self.steam = steam
        self.apps = list(apps)
        self.ccs = tuple(ccs)
        self.rng = random.Random(seed)
        self.currency = {cc: currency_for(cc) for cc in self.ccs}
        self.truth: dict[tuple[int, str], PriceRow] = {}
        self.changes: list[ChangeRow] = []
        for app in self.apps:
            roll = self.rng.random()
            for cc in self.ccs:
                if roll < 0.04:
                    self.truth[app, cc] = ("unknown", *_NOT_PRICED)  # never set: success:false
                elif roll < 0.14:
                    self._set(app, cc, None)
                else:
                    initial = self.rng.choice((499, 999, 1499, 1999, 2999, 5999))
                    discount = self.rng.choice((0, 0, 0, 0, 25, 50))
                    self._set(app, cc, (initial, initial * (100 - discount) // 100, discount))

    def _set(self, app: int, cc: str, price: tuple[int, int, int] | None) -> None:
        if price is None:
            self.steam.set_no_price(app, cc)
            self.truth[app, cc] = ("no_price", *_NOT_PRICED)
        else:
            self.steam.set_price(app, cc, *price)
            self.truth[app, cc] = ("priced", self.currency[cc], *price)

    def mutate(self, share: float) -> list[ChangeRow]:
        """Change the price of about ``share`` of the known apps in every region; the changes."""
        made: list[ChangeRow] = []
        for app in self.apps:
            if self.truth[app, self.ccs[0]][0] == "unknown" or self.rng.random() >= share:
                continue
            for cc in self.ccs:
                status, _, initial, final, discount = self.truth[app, cc]
                pick = self.rng.random()
                new: tuple[int, int, int] | None
                if status == "no_price":
                    kind, new = "became_priced", (1999, 1999, 0)
                elif initial is None or final is None or discount is None:
                    raise AssertionError(f"priced row without prices: {self.truth[app, cc]}")
                elif discount:
                    if pick < 0.7:
                        kind, new = "discount_ended", (initial, initial, 0)
                    else:
                        d = 75 if discount != 75 else 50
                        kind, new = "discount_changed", (initial, initial * (100 - d) // 100, d)
                elif pick < 0.5:
                    kind, new = "discount_started", (initial, initial // 2, 50)
                elif pick < 0.8:
                    kind, new = "list_price_increased", (initial + 500, final + 500, 0)
                else:
                    kind, new = "became_unpriced", None
                old = (initial, final, discount)
                self._set(app, cc, new)
                made.append((app, cc, kind, *old, *(new or (None, None, None))))
        self.changes.extend(made)
        return made

    def changed_regions(self) -> Counter[tuple[int, str]]:
        """How many notifications each (app, region) is owed: one per change."""
        return Counter((row[0], row[1]) for row in self.changes)


async def current_rows(pipeline: Pipeline) -> dict[tuple[int, str], PriceRow]:
    return {(r[0], r[1]): tuple(r[2:]) for r in await pipeline.query(SWEEP_CURRENT)}  # type: ignore[misc]


async def change_rows(pipeline: Pipeline) -> Counter[ChangeRow]:
    return Counter(tuple(r) for r in await pipeline.query(SWEEP_CHANGES))


def mismatches(expected: Mapping[Any, Any], actual: Mapping[Any, Any], limit: int = 8) -> str:
    """A short account of how two mappings differ ('' when equal), for assertion messages."""
    missing = [k for k in expected if k not in actual]
    extra = [k for k in actual if k not in expected]
    wrong = [k for k in expected if k in actual and actual[k] != expected[k]]
    if not (missing or extra or wrong):
        return ""
    return (
        f"{len(missing)} missing {missing[:limit]}; {len(extra)} unexpected {extra[:limit]}; "
        f"{len(wrong)} wrong {[(k, expected[k], actual[k]) for k in wrong[:limit]]}"
    )


def discord_posts(discord: Any) -> Counter[tuple[int, str]]:
    """How often each (app, region) was shown in a message the fake Discord accepted."""
    from steamprice.discord import changes_shown

    return Counter(x for m in discord.messages for x in changes_shown(m.visible_embeds))


async def ledger(pipeline: Pipeline) -> dict[tuple[int, str], list[str]]:
    """Statuses of the Discord delivery ledger's rows per (app, region)."""
    rows = await pipeline.query("SELECT app_id, cc, status FROM discord_deliveries")
    out: dict[tuple[int, str], list[str]] = {}
    for app, cc, status in rows:
        out.setdefault((int(app), str(cc)), []).append(str(status))
    return out


def notification_problems(
    owed: Counter[tuple[int, str]],
    posted: Counter[tuple[int, str]],
    statuses: Mapping[tuple[int, str], list[str]],
) -> str:
    """'' when every owed notification went out exactly once ('' too for an 'uncertain' one,
    whose post a kill may have cut before or after Discord took it: at most once there)."""
    problems = []
    for key in sorted(set(owed) | set(posted)):
        want, got = owed.get(key, 0), posted.get(key, 0)
        uncertain = statuses.get(key, []).count("uncertain")
        if got == want or (uncertain and want - uncertain <= got <= want):
            continue
        problems.append(f"{key}: owed {want}, posted {got}, ledger {statuses.get(key)}")
    return "; ".join(problems[:10]) + (
        f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
    )


async def web_texts(worker: Worker) -> dict[str, str]:
    """Every page the worker serves (see WEB_PAGES), by path."""
    out: dict[str, str] = {}
    async with aiohttp.ClientSession() as s:
        for path in WEB_PAGES:
            async with s.get(f"{worker.url}{path}") as r:
                out[path] = await r.text()
    return out


def leaks(texts: Mapping[str, str], secrets: Iterable[str]) -> list[str]:
    """Where any secret (or its URL-encoded form) shows up; names the place, never the secret."""
    from urllib.parse import quote

    found = []
    for n, secret in enumerate(s for s in secrets if s):
        for form in {secret, quote(secret, safe="")}:
            found += [f"secret #{n} in {where}" for where, text in texts.items() if form in text]
    return found


async def pipeline_status_while_stopping(
    worker: Worker, sig: int = signal.SIGTERM
) -> tuple[list[float], int, int]:
    """Send ``sig`` and read ``steam_pipeline_status`` until the web server goes away.

    The gauge must drop to 0 in the worker's own shutdown, before its web server stops: polled
    every few milliseconds, the last value read is the last one the worker showed. Returns the
    values read (changes only), how many reads saw 0, and the exit code.
    """
    assert worker.proc is not None
    worker.proc.send_signal(sig)
    seen: list[float] = []
    zeros = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
        while worker.proc.returncode is None:
            try:
                async with s.get(f"{worker.url}/metrics") as r:
                    value = metric(await r.text(), "steam_pipeline_status", pipeline="worker")
            except (aiohttp.ClientError, OSError, TimeoutError):
                value = None
            zeros += value == 0.0
            if value is not None and (not seen or seen[-1] != value):
                seen.append(value)
            try:
                await asyncio.wait_for(asyncio.shield(worker.proc.wait()), 0.005)
            except TimeoutError:
                pass
    return seen, zeros, await worker.proc.wait()


class FaultRun:
    """A pipeline for a fault test, with every secret set and grepped for.

    The database is reached as a private user with a password (:class:`MySQLUser`), the Steam
    Web API key is the fake's, the webhook carries a token: :meth:`leaks` looks for all three in
    every worker's log (killed ones too), every page the live workers serve, the output of the
    commands run through :meth:`cli` and the app-ids-failed topic.
    """

    def __init__(self, tmp: Path, steam: Any, discord: Any, **env: str) -> None:
        self.steam = steam
        self.discord = discord
        self.steam_key = f"key-{uuid.uuid4().hex}"
        self.webhook_token = f"tok-{uuid.uuid4().hex}"
        steam.api_key = self.steam_key
        self.pipeline = Pipeline(
            tmp,
            STEAM_STORE_URL=steam.url,
            STEAM_API_URL=steam.url,
            STEAMSPY_URL=f"{steam.url}/api.php",
            STEAM_API_KEY=self.steam_key,
            DISCORD_WEBHOOK_URL=discord.webhook_url("8008", self.webhook_token),
            **env,
        )
        self.user = MySQLUser(self.pipeline.db)
        self.pipeline.env.update(self.user.env)
        self.outputs: list[str] = []

    @property
    def secrets(self) -> list[str]:
        return [self.steam_key, self.webhook_token, self.user.password]

    async def __aenter__(self) -> FaultRun:
        await self.user.create()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.pipeline.close()
        finally:
            await self.user.drop()
        for w in self.pipeline.workers:
            if "Traceback" in w.log():
                print(f"--- {w.name} log (has a traceback) ---\n{w.log()[-20000:]}")

    async def cli(self, *args: str) -> str:
        out = await self.pipeline.cli(*args)
        self.outputs.append(out)
        return out

    async def leaks(self) -> list[str]:
        texts = {f"log of {w.name}": w.log() for w in self.pipeline.workers}
        for w in self.pipeline.workers:
            if w.proc is not None and w.proc.returncode is None:
                pages = await web_texts(w)
                texts.update({f"{w.name} page {path}": text for path, text in pages.items()})
        texts.update({f"command output #{n}": out for n, out in enumerate(self.outputs)})
        failed = await self.pipeline.read_topic("app-ids-failed")
        texts["app-ids-failed"] = "\n".join(repr(v) for _, v in failed)
        assert any(w.log() for w in self.pipeline.workers), "no worker log to grep"
        return leaks(texts, self.secrets)


def apps_requested(steam: Any, since: int = 0) -> Counter[int]:
    """How often each app was asked for in ``appdetails`` requests from ``since`` on."""
    asked: Counter[int] = Counter()
    for r in steam.requests[since:]:
        if r.path.startswith("/api/appdetails") and r.status == 200:
            asked.update(int(a) for a in r.query.get("appids", "").split(",") if a)
    return asked


def store_requests(steam: Any, since: int = 0) -> int:
    """``appdetails`` requests the fake store answered from ``since`` on, whatever the answer."""
    return sum(r.path.startswith("/api/appdetails") for r in steam.requests[since:])


async def sweep_problems(pipeline: Pipeline, catalog: Catalog, discord: Any = None) -> str:
    """What keeps the pipeline's output from the catalog's ground truth ('' when none).

    ``price_current`` must equal the truth, ``price_changes`` hold each expected change once
    and nothing else, and (with ``discord``) every change be notified once and none wait.
    """
    problems = []
    current = await current_rows(pipeline)
    if wrong := mismatches(catalog.truth, current):
        problems.append(f"price_current: {wrong}")
    changes = await change_rows(pipeline)
    expected = Counter(catalog.changes)
    if changes != expected:
        twice = [c for c, n in changes.items() if n > 1]
        problems.append(f"price_changes: {mismatches(expected, changes)}; duplicated {twice[:5]}")
    if discord is not None:
        statuses = await ledger(pipeline)
        queued = sum(s in ("pending", "sending") for ss in statuses.values() for s in ss)
        if queued:
            problems.append(f"Discord: {queued} changes still queued")
        elif wrong := notification_problems(
            catalog.changed_regions(), discord_posts(discord), statuses
        ):
            problems.append(f"Discord: {wrong}")
    return " | ".join(problems)


async def wait_until_right(
    what: str, problems: Callable[[], Awaitable[str]], timeout: float
) -> float:
    """Poll ``problems`` until it reports none; the seconds it took. Fails with the last report."""
    started = time.monotonic()
    last = ""

    async def right() -> bool:
        nonlocal last
        last = await problems()
        return not last

    try:
        await wait_for(what, right, timeout=timeout, every=0.5)
    except AssertionError:
        raise AssertionError(
            f"timed out after {timeout:.0f} s waiting for {what}: {last}"
        ) from None
    return time.monotonic() - started


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


class Quiet:
    """A probe for :func:`wait_until_right`: '' once the pipeline has nothing left to do.

    That is: every live worker consumes and waits for no crawl answer, and no topic of the
    pipeline has grown for ``seconds``. Committed offsets are :func:`commit_problems`' subject.
    """

    def __init__(self, pipeline: Pipeline, workers: Sequence[Worker], seconds: float = 3.0) -> None:
        self.pipeline = pipeline
        self.workers = workers
        self.seconds = seconds
        self._ends: dict[str, int] | None = None
        self._since = 0.0

    async def __call__(self) -> str:
        for w in self.workers:
            if w.proc is None or w.proc.returncode is not None:
                continue
            health = await w.health()
            if not health or not health.get("consuming"):
                return f"{w.name} is not consuming: {health}"
            pending = metric(await w.metrics(), "steam_queue_size", queue="pending")
            if pending:
                return f"{w.name} waits for {pending:.0f} crawl answers"
        ends = await topic_ends(self.pipeline)
        now = time.monotonic()
        if ends != self._ends:
            self._ends, self._since = ends, now
            return "topics still growing"
        if now - self._since < self.seconds:
            return f"topics quiet for {now - self._since:.1f} s only"
        return ""


async def committed_offsets(pipeline: Pipeline, short: str) -> dict[int, tuple[int, int]]:
    """Per partition of a topic: the offset the pipeline's consumer group committed, the end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=pipeline.kafka, group_id=pipeline.app_id, enable_auto_commit=False
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


# The fault tests' fakes, imported by those modules in place of conftest's ``steam`` and
# ``discord`` fixtures.
@pytest.fixture(name="steam")
async def sweep_steam() -> AsyncIterator[FakeSteam]:
    """No rate limit, a quarter of a second per answer: a sweep of a few thousand apps lasts
    long enough to be interrupted at chosen points (the fake counts the requests it served)."""
    async with FakeSteam(rate_limit=None, latency=0.25) as fake:
        yield fake


@pytest.fixture(name="discord")
async def sweep_discord() -> AsyncIterator[FakeDiscord]:
    """Discord's channel limit is other tests' subject."""
    async with FakeDiscord(channel_limit=None) as fake:
        yield fake


# Settings of the sweeps of the fault tests.
SWEEP_BATCH = 100
SWEEP_ENV = {
    "STEAM_BATCH_SIZE": str(SWEEP_BATCH),
    "STEAM_MAX_REQUESTS_PER_MINUTE": "600",
    # The test seeds each round itself, a few seconds after the last: a new round each time,
    # while a seed replayed after a restart (its dispatch is moments old) is still a no-op.
    "SEED_DEDUPE_SECONDS": "1",
    # A killed member leaves the group in seconds, not the default minute.
    "BROKER_SESSION_TIMEOUT": "8",
    "BROKER_REBALANCE_TIMEOUT": "8",
    # Discord's own limits are other tests' subject: here they only must not slow the count.
    "DISCORD_CHANNEL_MESSAGES": "1000",
    "DISCORD_DIGEST_THRESHOLD": "50",
}


async def first_sweep(run: FaultRun, catalog: Catalog, *workers: Worker) -> None:
    """Round 1: every app priced, nothing changed yet, nothing left in flight."""
    await seed_apps(run.pipeline, catalog.apps)
    await wait_until_right(
        "the first sweep", lambda: sweep_problems(run.pipeline, catalog), timeout=90
    )
    await wait_until_right("the first sweep to settle", Quiet(run.pipeline, workers), timeout=60)

    async def past_dedupe() -> bool:  # the next seeds must be a new round (SEED_DEDUPE_SECONDS)
        return time.monotonic() - run.steam.requests[-1].time > 1.5

    await wait_for("the seed dedupe window to pass", past_dedupe)


async def served_at_least(steam: Any, since: int, n: int) -> None:
    async def served() -> bool:
        return store_requests(steam, since) >= n

    await wait_for(f"{n} store requests", served, timeout=90, every=0.05)


PIPELINE_TOPICS = (
    "app-ids",
    "schedule",
    "crawl-requests",
    "prices-raw",
    "prices-normalized",
    "price-changes",
)


async def stalled_commits(pipeline: Pipeline) -> dict[str, list[int]]:
    """Partitions whose committed offset is behind the end (call once the pipeline is quiet)."""
    stalled: dict[str, list[int]] = {}
    for short in PIPELINE_TOPICS:
        offsets = await committed_offsets(pipeline, short)
        behind = [p for p, (done, end) in sorted(offsets.items()) if done < end]
        if behind:
            stalled[short] = behind
    return stalled


async def commit_problems(pipeline: Pipeline) -> str:
    """'' once the group has committed every partition of the pipeline's topics to its end.

    Faust's own consumer could leave a partition's commits stuck behind a message it lost in a
    rebalance (faust-streaming#596); ``steamprice.kafka`` re-reads such messages, so after a
    quiet moment nothing may stay behind.
    """
    stalled = await stalled_commits(pipeline)
    return f"commits behind the end of {stalled}" if stalled else ""
