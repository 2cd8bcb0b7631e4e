"""Canary: the faust-streaming and aiokafka internals ``steamprice/kafka.py`` relies on still exist.

The consumer fix overrides private methods and reads private attributes of exact, pinned
versions (and the worker refuses any other, see ``check_versions``). When an upgrade is tried
anyway, this test names what moved: each private method with the parameters kafka.py calls
it with, each private attribute with its type. It also reads kafka.py, so a new private name
used there without being listed here fails too.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
import faust.transport.conductor
import faust.transport.producer
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.consumer.subscription_state import SubscriptionState
from faust.tables import TableManager as FaustTableManager
from faust.tables.base import Collection
from faust.tables.recovery import Recovery as FaustRecovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer as FaustProducerBuffer
from faust.types import TP
from faust.utils.functional import consecutive_numbers
from intervaltree import IntervalTree
from mode.services import ServiceTask

from steamprice import kafka
from steamprice.app import app

FaustConsumer = faust_aiokafka.Consumer
FaustThread = faust_aiokafka.AIOKafkaConsumerThread

# Private (or internal) methods kafka.py overrides or calls: owner, name, parameters.
METHODS: list[tuple[type, str, str]] = [
    (
        FaustThread,
        "_fetch_records",
        "self, consumer, active_partitions, timeout=None, max_records=None",
    ),
    (FaustThread, "_ensure_consumer", "self"),
    (FaustThread, "call_thread", "self, fun, *args, **kwargs"),
    # Overridden: waits for the leaders of the topics first.
    (FaustThread, "subscribe", "self, topics"),
    (FaustThread, "__init__", "self, consumer, **kwargs"),
    # Overridden: the consumer it builds fetches as the app says (fetch.min.bytes, max wait).
    (FaustThread, "_create_worker_consumer", "self, transport"),
    (FaustConsumer, "_new_consumer_thread", "self"),
    (FaustConsumer, "_is_changelog_tp", "self, tp"),
    (FaustConsumer, "_getmany", "self, active_partitions, timeout"),
    (FaustConsumer, "getmany", "self, timeout"),
    (FaustConsumer, "_add_gap", "self, tp, offset_from, offset_to"),
    (FaustConsumer, "_new_offset", "self, tp"),
    (FaustConsumer, "ack", "self, message"),
    # Copied with its deliveries made cheaper (pinned by its source's digest below).
    (FaustConsumer, "_drain_messages", "self, fetcher"),
    (FaustConsumer, "seek", "self, partition, offset"),
    (faust.App, "_new_transport", "self"),
    # Table recovery's offsets check, and aiokafka's coordinator request (static membership).
    (FaustRecovery, "_build_offsets", "self, consumer, tps, destination, title"),
    (GroupCoordinator, "_send_req", "self, request"),
    # The producer buffer of table writes: its sending step, called as Faust's task calls it.
    (FaustProducerBuffer, "_send_pending", "self, fut"),
    # Table writes sent as record batches: the Kafka producer behind Faust's, and the callback
    # that writes a changelog offset to RocksDB (recognised, then called once per batch).
    (faust_aiokafka.Producer, "_ensure_producer", "self"),
    (Collection, "_on_changelog_sent", "self, fut"),
    # The Kafka producer is built here (overridden) and its client's metadata wait wrapped, so
    # that every topic sent to is tracked (kafka.track_sent_topics).
    (faust_aiokafka.Producer, "_new_producer", "self, transactional_id=None"),
    (AIOKafkaClient, "_wait_on_metadata", "self, topic"),
]
# Private attributes of a faust consumer that kafka.py reads or changes, and their types.
CONSUMER_ATTRIBUTES: dict[str, Callable[[Any], bool]] = {
    "_read_offset": lambda v: isinstance(v, dict),
    "_acked": lambda v: isinstance(v, dict) and isinstance(v[TP("t", 0)], list),
    "_acked_index": lambda v: isinstance(v, dict) and isinstance(v[TP("t", 0)], set),
    "_committed_offset": lambda v: isinstance(v, dict),
    "_gap": lambda v: isinstance(v, dict) and isinstance(v[TP("t", 0)], IntervalTree),
    "_unacked_messages": lambda v: hasattr(v, "__iter__") and hasattr(v, "add"),
    "_thread": lambda v: isinstance(v, kafka.ConsumerThread),
    "_commit_every": lambda v: v is None or isinstance(v, int),
    "_stopped": lambda v: callable(v.is_set),
    # Set while a commit runs (one at a time): no partition's commits are judged stuck then.
    "_commit_fut": lambda v: v is None,
}
# Every private name of faust and aiokafka that kafka.py uses (checked against its source below).
PRIVATE = {
    *(name for _, name, _ in METHODS if name.startswith("_") and name != "__init__"),
    *CONSUMER_ATTRIBUTES,
    "call_thread",  # mode's thread hand-off, internal to faust's consumer
    "_tp_index",  # the conductor's index of channels by partition
    "_subscription",  # aiokafka's subscription state
    "_coordinator",  # aiokafka consumer's group coordinator
    "_client",  # aiokafka consumer's client (its cluster metadata, before subscribing)
    "_group_instance_id",  # the coordinator's static member id
    "_handle_pending",  # the producer buffer's task, replaced (see the buffer test below)
    "_send_on_produce_message",  # the producer's on_produce_message signal, sent per message
    "_fetch_min_bytes",  # the aiokafka consumer's fetch settings, handed to its fetcher
    "_fetch_max_wait_ms",
    "_topics",  # the topics an aiokafka client refreshes the metadata of
}
# faust-streaming 0.15.3's ``Consumer._drain_messages``, as kafka.py copies it.
DRAIN_LOOP_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"
BASES = {
    kafka.ConsumerThread: FaustThread,
    kafka.Consumer: FaustConsumer,
    kafka.App: faust.App,
    kafka.Recovery: FaustRecovery,
    kafka.TableManager: FaustTableManager,
    kafka.ProducerBuffer: FaustProducerBuffer,
    kafka.Producer: faust_aiokafka.Producer,
}


def shape(function: Any) -> str:
    """Parameters as kafka.py relies on them: names, order, kinds and defaults."""
    out = []
    for p in inspect.signature(function).parameters.values():
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        default = "" if p.default is p.empty else f"={p.default!r}"
        out.append(f"{prefix}{p.name}{default}")
    return ", ".join(out)


@pytest.mark.parametrize(("owner", "name", "parameters"), METHODS, ids=[m[1] for m in METHODS])
def test_each_private_method_exists_with_the_parameters_kafka_py_uses(
    owner: type, name: str, parameters: str
) -> None:
    assert name in dir(owner), f"{owner.__qualname__}.{name} is gone"
    assert shape(getattr(owner, name)) == parameters, f"{owner.__qualname__}.{name} changed"


def test_kafka_py_overrides_the_methods_it_means_to() -> None:
    """An override whose base method was renamed would silently never be called."""
    for cls, base in BASES.items():
        for name in vars(cls):
            if name in PRIVATE:
                assert name in dir(base), f"{cls.__name__}.{name} overrides nothing"


def test_the_consumer_has_the_private_attributes_kafka_py_uses() -> None:
    consumer = app.consumer  # built, never started: no broker needed
    assert isinstance(consumer, kafka.Consumer)
    for name, check in CONSUMER_ATTRIBUTES.items():
        assert hasattr(consumer, name), f"faust's consumer has no {name}"
        assert check(getattr(consumer, name)), f"faust's consumer {name} changed type"
    # Read without a default in kafka.py: a rename must fail loudly, not turn the check off.
    assert isinstance(app.topics._tp_index, dict)
    # A commit in progress: set for the whole of force_commit (offsets taken off the acked ones,
    # table writes flushed, the broker's answer), None again after.
    commit = inspect.getsource(FaustConsumer.commit)
    assert "self._commit_fut = asyncio.Future(" in commit and "self.force_commit(" in commit
    assert "fut, self._commit_fut = self._commit_fut, None" in commit


def test_the_drain_loop_kafka_py_copies_is_faust_s_own() -> None:
    """``Consumer._drain_messages`` is Faust's loop with one change: a new release's loop must be
    copied again (and the change made again), not left behind."""
    source = inspect.getsource(FaustConsumer._drain_messages)
    assert hashlib.sha256(source.encode()).hexdigest() == DRAIN_LOOP_SHA256
    assert (
        "await self.wait_first(\n" in source
        and "callback(message), self.suspend_flow.wait()" in source
    )
    assert "await deliver(callback, message)" in inspect.getsource(kafka.Consumer._drain_messages)


def test_the_aiokafka_consumer_hands_its_fetch_settings_to_its_fetcher() -> None:
    """kafka.py sets them on the consumer after Faust built it, before it starts."""
    init, start = (
        inspect.getsource(f) for f in (AIOKafkaConsumer.__init__, AIOKafkaConsumer.start)
    )
    for name in ("fetch_min_bytes", "fetch_max_wait_ms"):
        assert f"self._{name} = {name}" in init
        assert f"{name}=self._{name}," in start


def test_the_message_and_app_fields_kafka_py_reads() -> None:
    assert {"tracked", "generation_id", "offset", "tp"} <= set(faust.types.Message.__slots__)
    assert isinstance(app.consumer_generation_id, int)
    assert callable(app.flow_control.is_active) and isinstance(app.rebalancing, bool)
    assert isinstance(app.consumer.flow_active, bool)
    assert shape(faust_aiokafka.ensure_aiokafka_TP) == "tp"
    assert list(next(consecutive_numbers([3, 4, 5, 7]))) == [3, 4, 5]
    tree = IntervalTree()
    tree.addi(3, 5)
    tree.merge_overlaps()
    assert tree.overlap(0, 4) and (tree.chop(0, 5) or True) and not tree


def test_the_producer_buffer_internals_kafka_py_relies_on() -> None:
    # The task kafka.ProducerBuffer replaces is a mode task of that name, taking only self;
    # the conductor waits on the buffer's wait_until_ebb, built by Producer.__init__.
    task = vars(FaustProducerBuffer)["_handle_pending"]
    assert isinstance(task, ServiceTask) and shape(task.fun) == "self"
    # mode runs a service's tasks by name: the override is the one that runs.
    assert isinstance(vars(kafka.ProducerBuffer)["_handle_pending"], ServiceTask)
    assert "_handle_pending" in kafka.ProducerBuffer._tasks[kafka.ProducerBuffer._get_class_id()]
    assert "self.buffer = ProducerBuffer(" in inspect.getsource(faust.transport.producer.Producer)
    assert "buffer.wait_until_ebb" in inspect.getsource(faust.transport.conductor)
    buffer = app.producer.buffer
    assert isinstance(buffer, kafka.ProducerBuffer)
    assert isinstance(buffer.pending, asyncio.Queue) and isinstance(
        buffer.message_sent, asyncio.Event
    )
    assert buffer.app is app and buffer.max_messages == kafka.BUFFER_MESSAGES
    # Record batches: aiokafka's batch API, and what Faust's own send does per message.
    assert shape(AIOKafkaProducer.create_batch) == "self"
    assert shape(AIOKafkaProducer.send_batch) == "self, batch, topic, partition"
    assert "self._send_on_produce_message = self.app.on_produce_message.send" in (
        inspect.getsource(faust_aiokafka.Producer.__post_init__)
    )
    assert "int(timestamp * 1000.0)" in inspect.getsource(faust_aiokafka.Producer.send)
    assert isinstance(app.producer.allow_headers, bool)
    # A table write is queued with the table's callback, its partition already chosen.
    sending = inspect.getsource(Collection.send_changelog)
    assert "callback=self._on_changelog_sent" in sending and "eager_partitioning=True" in sending
    assert "set_persisted_offset(res.topic_partition, res.offset)" in inspect.getsource(
        Collection._on_changelog_sent
    )


def test_the_coordinator_and_recovery_internals_kafka_py_relies_on() -> None:
    # Static membership: the id is read from the coordinator, which the consumer keeps.
    assert "self._group_instance_id = group_instance_id" in inspect.getsource(
        GroupCoordinator.__init__
    )
    assert "self._coordinator" in inspect.getsource(AIOKafkaConsumer.__init__)
    # Before subscribing: the consumer's client reads every topic's partitions and leaders.
    assert "self._client = AIOKafkaClient(" in inspect.getsource(AIOKafkaConsumer.__init__)
    assert list(inspect.signature(AIOKafkaClient.fetch_all_metadata).parameters) == ["self"]
    for name in ("partitions_for_topic", "available_partitions_for_topic"):
        assert list(inspect.signature(getattr(ClusterMetadata, name)).parameters)[1] == "topic"
    # kafka.TableManager's recovery property fills faust's own cache attribute.
    assert "self._recovery" in inspect.getsource(FaustTableManager.__init__)
    assert isinstance(FaustTableManager.recovery, property)
    assert "active_highwaters" in inspect.getsource(FaustRecovery.__init__)


async def test_the_aiokafka_client_tracks_topics_as_kafka_py_expects() -> None:
    """track_sent_topics: a client refreshes the metadata of the topics in its ``_topics`` (of
    every topic while none is), which ``add_topic`` extends, and the producer's sends and
    batches look their topic's metadata up through ``client._wait_on_metadata``."""
    client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9")  # never started
    assert client._topics == set()
    metadata_update = inspect.getsource(AIOKafkaClient._metadata_update)
    assert "MetadataRequest(list(topics) if topics else None)" in metadata_update
    assert "topics = self._topics" in inspect.getsource(AIOKafkaClient._md_synchronizer)
    assert "self._topics.add(topic)" in inspect.getsource(AIOKafkaClient.add_topic)
    for method in (AIOKafkaProducer.send, AIOKafkaProducer.send_batch):
        assert "await self.client._wait_on_metadata(topic)" in inspect.getsource(method)
    assert "self.client = AIOKafkaClient(" in inspect.getsource(AIOKafkaProducer.__init__)
    await client.close()


async def test_aiokafka_subscription_state_as_kafka_py_walks_it() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")  # never started
    assert isinstance(consumer._subscription, SubscriptionState)
    tp = TopicPartition("t", 0)
    consumer._subscription.assign_from_user({tp})
    assignment = consumer._subscription.subscription.assignment
    assert assignment.active and tp in assignment.tps
    state = assignment.state_value(tp)
    assert not state.has_valid_position
    state.reset_to(42)
    assert state.has_valid_position and state.position == 42


def test_every_private_name_kafka_py_uses_is_guarded_here() -> None:
    source = Path(kafka.__file__).read_text(encoding="utf-8")
    used = {
        *re.findall(r"\.(_[a-z]\w*)", source),  # attributes read, methods called
        *re.findall(r"def (_[a-z]\w*)", source),  # methods overridden
        *re.findall(r"getattr\([^,]+,\s*\"(_\w+)\"", source),
        *(["call_thread"] if ".call_thread(" in source else []),
    }
    # kafka.py's own names: defined by its classes and not by their bases, or set on self.
    own = {name for cls, base in BASES.items() for name in vars(cls) if name not in dir(base)}
    own |= set(re.findall(r"self\.(_[a-z]\w*)(?:\s*:[^=\n]+)?\s*=[^=]", source))
    own |= {"_batch"}  # the module's context variable
    assert used - own == PRIVATE, (
        f"guard these too: {sorted(used - own - PRIVATE)}; "
        f"no longer used: {sorted(PRIVATE - (used - own))}"
    )


# --- the version guard -------------------------------------------------------------------------


def test_the_proven_versions_are_the_pinned_ones() -> None:
    pyproject = tomllib.loads((Path(kafka.__file__).parents[1] / "pyproject.toml").read_text())
    pins = dict(
        re.fullmatch(r"([\w-]+)==([\w.]+)", d).groups()  # type: ignore[union-attr]
        for d in pyproject["project"]["dependencies"]
    )
    assert {name: pins[name] for name in kafka.PROVEN_WITH} == kafka.PROVEN_WITH
    assert kafka.check_versions(False, kafka.installed_versions()) is None  # this venv


@pytest.mark.parametrize(
    ("installed", "named"),
    [
        ({"faust-streaming": "0.15.4", "aiokafka": "0.14.0"}, "not faust-streaming 0.15.4"),
        ({"faust-streaming": "0.15.3", "aiokafka": "0.13.0"}, "not aiokafka 0.13.0"),
        ({"faust-streaming": "0.15.3", "aiokafka": None}, "not aiokafka (missing)"),
    ],
)
def test_other_versions_are_refused_in_one_line_unless_allowed(
    installed: dict[str, str | None], named: str
) -> None:
    with pytest.raises(kafka.UntestedVersions) as refused:
        kafka.check_versions(False, installed)
    message = str(refused.value)
    assert "\n" not in message and named in message
    assert "faust-streaming 0.15.3 and aiokafka 0.14.0" in message
    assert "ALLOW_UNTESTED_FAUST=true" in message

    warning = kafka.check_versions(True, installed)
    assert warning is not None and named in warning


def test_the_worker_command_refuses_untested_versions_with_one_line(tmp_path: Path) -> None:
    """``steamprice worker`` itself (the path operators run), with faust reported as 0.16.0."""
    script = (
        "import sys, steamprice.kafka as k\n"
        "k.installed_versions = lambda: {'faust-streaming': '0.16.0', 'aiokafka': '0.14.0'}\n"
        "sys.argv = ['steamprice', 'worker', '-l', 'info']\n"
        "from steamprice import main\n"
        "main()\n"
    )
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "KAFKA_BROKER": "kafka://127.0.0.1:9"}
    env.pop("ALLOW_UNTESTED_FAUST", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, timeout=120
    )
    assert done.returncode == 1
    err = done.stderr.decode().strip()
    assert err.count("\n") == 0 and err.startswith("steamprice worker: the Kafka consumer fix")
    assert "not faust-streaming 0.16.0" in err and not (tmp_path / "data").exists()
