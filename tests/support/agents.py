"""The agent tier: the real Faust app in this process, memory tables, sends captured, no broker.

Agents are driven with ``agent.test_context()`` (faust's testing guide). The app of this
process is built once, by :func:`build_in_process_app`, with ``TABLE_STORE=memory://`` and a
broker address nothing listens on; what an agent sends to a topic is recorded by :class:`Sent`
instead of being produced, and the services an agent talks to (MySQL, the Discord notifier) are
replaced by fakes (:class:`FakeService`, :class:`FakeWriter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, NamedTuple

import faust

from steamprice.batches import read_schedule
from steamprice.models import ScheduleCommand
from steamprice.storage import SinkOutcome
from tests.support.infra import wait_for

# What the in-process app is built with: memory tables, nothing on disk, and a broker address
# where nothing listens, so a send that escaped the capture fails instead of reaching Kafka.
IN_PROCESS_ENV = {
    "TABLE_STORE": "memory://",
    "APP_ID": "agent-tests",
    "KAFKA_BROKER": "kafka://127.0.0.1:9",
    "MYSQL_DB": "agent_tests_never_used",
    "DISCORD_WEBHOOK_URL": "",
    "STEAM_API_KEY": "",
}


@contextlib.contextmanager
def _scoped_environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set (and the working directory a fresh one) only while the app is built.

    Restored afterwards: worker subprocesses started later by the integration tests inherit
    this process's environment and must run with their own settings, not these. The fresh
    working directory keeps a developer's ``.env`` out of the settings.
    """
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="steamprice-agents-") as tmp:
        values = {**values, "DATA_DIR": os.path.join(tmp, "data")}
        saved = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(cwd)
            for name, value in saved.items():
                if value is None:
                    del os.environ[name]
                else:
                    os.environ[name] = value


def build_in_process_app() -> faust.App:
    """The project's app, as this test process uses it: built once, with memory tables.

    Called first thing by ``tests/conftest.py``, since any test module may import an
    agent module, and the store of the module-level app is fixed when it is built.
    """
    if "steamprice.app" not in sys.modules:
        with _scoped_environment(IN_PROCESS_ENV):
            import steamprice.app  # noqa: F401 (built here, under the scoped environment)
    from steamprice.app import app

    if app.conf.store.scheme != "memory":
        raise RuntimeError(
            f"steamprice.app was built with the table store {app.conf.store} before the test "
            "session started; the agent tier needs memory:// (see tests/support/agents.py)"
        )
    return app


class Record(NamedTuple):
    """One message an agent sent (or a table wrote to its changelog)."""

    topic: str
    key: Any
    value: Any
    partition: int | None


@dataclass
class Sent:
    """Everything sent to topics and changelogs during a test, in order, instead of Kafka."""

    records: list[Record] = field(default_factory=list)

    def to(self, topic: Any) -> list[tuple[Any, Any]]:
        """The (key, value) pairs sent to ``topic`` (a topic, a table's changelog, or a name)."""
        if isinstance(topic, faust.types.TableT):
            topic = topic.changelog_topic
        name = topic if isinstance(topic, str) else topic.get_topic_name()
        return [(r.key, r.value) for r in self.records if r.topic == name]

    def schedule_commands(self) -> list[tuple[int | None, list[ScheduleCommand]]]:
        """(partition, commands) of every schedule record sent, as the wire has them."""
        # Imported here: this module is loaded before the app that declares the topics is built.
        from steamprice.topics import schedule_topic

        name = schedule_topic.get_topic_name()
        return [
            (r.partition, read_schedule(json.loads(json.dumps(r.value))))
            for r in self.records
            if r.topic == name
        ]

    def capture(self, topic: Any) -> Any:
        """A replacement for ``topic.send`` that records instead of producing."""
        name = topic.get_topic_name()
        value_type = topic.value_type

        async def send(
            key: Any = None, value: Any = None, partition: int | None = None, **_: Any
        ) -> asyncio.Future[None]:
            # What the real send would refuse must fail here too.
            if isinstance(value_type, type) and issubclass(value_type, faust.Record):
                assert value is None or isinstance(value, value_type), (
                    f"{name} takes {value_type.__name__}, not {type(value).__name__}"
                )
            self.records.append(Record(name, key, value, partition))
            # Like Faust's send: a future of the delivery (delivered at once here).
            delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            delivered.set_result(None)
            return delivered

        return send

    async def send_now(self, app: Any, topic: Any, partition: int, values: list[bytes]) -> None:
        """A replacement for ``kafka.send_now`` (serialized values, delivered at once): recorded
        as ``topic.send`` records them, values decoded."""
        name = topic.get_topic_name()
        self.records.extend(Record(name, None, json.loads(v), partition) for v in values)

    def capture_changelog(self, table: Any) -> Any:
        """A replacement for the ``send_soon`` a table writes its changelog with."""
        name = table.changelog_topic.get_topic_name()

        def send_soon(
            key: Any = None, value: Any = None, partition: int | None = None, **_: Any
        ) -> Any:
            self.records.append(Record(name, key, value, partition))
            # The table reads the partition back from the future of the send.
            return SimpleNamespace(message=SimpleNamespace(partition=partition))

        return send_soon


@dataclass
class FakeWriter:
    """A sink's write (``write_observations``, ``notifier.enqueue`` ...) that records batches.

    Each call records its batch, then waits for ``gate`` when one is set (so a test can look
    at the acks while a write is in progress), then raises ``error`` when one is set, else
    returns like a committed transaction.
    """

    batches: list[list[Any]] = field(default_factory=list)
    returned: int = 0
    gate: asyncio.Event | None = None
    error: BaseException | None = None

    async def write(self, *args: Any) -> SinkOutcome:
        values = list(args[-1])  # write_observations(db, batch) or notifier.enqueue(batch)
        self.batches.append(values)
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        self.returned += 1
        return SinkOutcome(written=Counter({"price_current": len(values)}), rejected=0)

    async def wait_for_batches(self, n: int, timeout: float = 10.0) -> None:
        async def enough() -> bool:
            return len(self.batches) >= n

        await wait_for(f"{n} batch(es) handed to the writer", enough, timeout, every=0.01)


class FakeService:
    """Stands in for a worker service an agent starts (``maybe_start``), with given methods."""

    def __init__(self, **methods: Any) -> None:
        self.started = False
        for name, method in methods.items():
            setattr(self, name, method)

    async def maybe_start(self) -> bool:
        self.started = True
        return True


async def processed(event: Any, timeout: float = 10.0) -> None:
    """Wait until ``event`` was acked: its agent finished with it (or a sink committed it)."""

    async def acked() -> bool:
        return bool(event.message.acked)

    await wait_for(f"{event!r} to be acked", acked, timeout=timeout, every=0.01)


def acked(events: list[Any]) -> list[bool]:
    return [bool(e.message.acked) for e in events]


async def stopped(agent: Any, timeout: float = 10.0) -> None:
    """Wait until every actor of ``agent`` (a test context) has returned."""

    async def done() -> bool:
        return all(actor.actor_task.done() for actor in agent._actors)

    await wait_for(f"agent {agent.name} to stop", done, timeout=timeout, every=0.01)


@contextlib.asynccontextmanager
async def turns(count: Callable[[], int]) -> AsyncIterator[list[int]]:
    """What ``count()`` was at each turn another task got while the block ran (an agent that
    never awaits mid-record gives them turns only before and after it)."""
    seen: list[int] = []
    running = True

    async def other_task() -> None:
        while running:
            seen.append(count())
            await asyncio.sleep(0)

    probe = asyncio.ensure_future(other_task())
    try:
        yield seen
    finally:
        running = False
        await probe
