"""The seed intake's handler: a fetch of seeds becomes schedule records of one partition each;
garbage goes to app-ids-failed, message by message. (The consumer that fetches them,
``steamprice.seeds``, runs against the real broker in the integration tier.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from aiokafka.structs import ConsumerRecord

from steamprice.agents.intake import forward_seeds
from steamprice.app import app
from steamprice.batches import partition_for
from steamprice.metrics import Metrics
from steamprice.models import FailedInput
from steamprice.schedule import SEED
from steamprice.topics import app_ids_failed_topic, schedule_topic
from tests.support.agents import Sent

PARTITIONS = app.conf.topic_partitions


def seed_records(*raws: bytes, key: bytes | None = None) -> list[ConsumerRecord[bytes, bytes]]:
    """Seed records as the consumer fetches them (Kafka timestamps in ms)."""
    at = int(time.time() * 1000)
    return [
        ConsumerRecord("it.app-ids", 0, n, at + n, 0, key, raw, None, 0, len(raw), ())
        for n, raw in enumerate(raws)
    ]


BAD_SEEDS = [
    (b"", "empty message"),
    (b"   ", "empty message"),
    (b"not json", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b'{"appid": 730}', "object without an app_id field"),
    (b'{"app_id": "730"}', "must be an integer, not str"),
    (b"true", "must be an integer, not bool"),
    (b"7.5", "must be an integer, not float"),
    (b"0", "out of range"),
    (b"-3", "out of range"),
    (b"2147483648", "out of range"),
    (b"[" * 5000, "too large"),
    (b"[" * 1024, "nested too deeply"),
]


def invalid_seeds(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "steam_bad_input_total", {"source": "seed", "reason": "invalid"}
    )
    return value or 0.0


@pytest.mark.parametrize(("raw", "reason"), BAD_SEEDS, ids=[r for _, r in BAD_SEEDS])
async def test_a_bad_seed_goes_to_app_ids_failed_with_its_reason(
    raw: bytes, reason: str, sent: Sent, metrics: Metrics
) -> None:
    await forward_seeds(seed_records(raw, key=b"k"))

    [(key, failed)] = sent.to(app_ids_failed_topic)
    assert key is None  # no app id to key it by
    assert isinstance(failed, FailedInput)
    assert reason in failed.reason
    assert failed.raw == raw.decode("utf-8", "replace")[:1024]
    assert failed.at.tzinfo is not None
    assert sent.to(schedule_topic) == []
    assert invalid_seeds(metrics) == 1


@pytest.mark.parametrize("raw", [b"730", b" 730\n", b'{"app_id": 730}', b'{"app_id": 730, "x": 1}'])
async def test_a_good_seed_becomes_a_seed_command_in_its_partition(
    raw: bytes, sent: Sent, metrics: Metrics
) -> None:
    before = datetime.now(UTC)
    [record] = seed_records(raw)
    await forward_seeds([record])

    [(partition, [command])] = sent.schedule_commands()
    assert partition == partition_for(730, PARTITIONS)
    assert (command.app_id, command.op) == (730, SEED)
    # When it was put on the seed topic: a request made after that covers it.
    assert command.sent_at == datetime.fromtimestamp(record.timestamp / 1000, UTC)
    assert before <= command.at <= datetime.now(UTC)
    assert sent.to(app_ids_failed_topic) == []
    assert invalid_seeds(metrics) == 0
    consumed = {"topic": "app-ids", "operation": "consumed"}
    assert metrics.registry.get_sample_value("steam_kafka_messages_total", consumed) == 1


async def test_garbage_between_seeds_is_routed_message_by_message(sent: Sent) -> None:
    await forward_seeds(seed_records(b"10", b"junk", b"20", b"", b'{"app_id": 30}'))

    assert sorted(c.app_id for _, cmds in sent.schedule_commands() for c in cmds) == [10, 20, 30]
    assert [f.raw for _, f in sent.to(app_ids_failed_topic)] == ["junk", ""]


async def test_many_seeds_go_out_as_one_record_per_partition_each_app_once(sent: Sent) -> None:
    apps = list(range(1, 301))
    await forward_seeds(seed_records(*(str(a).encode() for a in [*apps, 5, 7])))  # 5 and 7 twice

    records = sent.schedule_commands()
    assert len(records) == len({partition_for(a, PARTITIONS) for a in apps})
    for partition, cmds in records:
        assert {partition_for(c.app_id, PARTITIONS) for c in cmds} == {partition}
        assert len({c.at for c in cmds}) == 1
    assert sorted(c.app_id for _, cmds in records for c in cmds) == apps
