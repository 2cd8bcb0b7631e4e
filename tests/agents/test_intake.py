"""The intake agent: seeds become schedule commands keyed by app id; garbage goes to app-ids-failed."""

from __future__ import annotations

import pytest

from steamprice.agents.intake import intake
from steamprice.metrics import Metrics
from steamprice.models import FailedInput, ScheduleCommand
from steamprice.schedule import SEED
from steamprice.topics import app_ids_failed_topic, schedule_topic
from tests.support.agents import Sent, processed

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
    async with intake.test_context() as agent:
        await processed(await agent.put(raw, key=b"k"))

    [(key, failed)] = sent.to(app_ids_failed_topic)
    assert key is None  # no app id to key it by
    assert isinstance(failed, FailedInput)
    assert reason in failed.reason
    assert failed.raw == raw.decode("utf-8", "replace")[:1024]
    assert failed.at.tzinfo is not None
    assert sent.to(schedule_topic) == []
    assert invalid_seeds(metrics) == 1


@pytest.mark.parametrize("raw", [b"730", b" 730\n", b'{"app_id": 730}', b'{"app_id": 730, "x": 1}'])
async def test_a_good_seed_becomes_a_seed_command_keyed_by_app_id(
    raw: bytes, sent: Sent, metrics: Metrics
) -> None:
    async with intake.test_context() as agent:
        await processed(await agent.put(raw, key=None))

    [(key, command)] = sent.to(schedule_topic)
    assert key == 730
    assert isinstance(command, ScheduleCommand)
    assert (command.app_id, command.op) == (730, SEED)
    assert sent.to(app_ids_failed_topic) == []
    assert invalid_seeds(metrics) == 0
    consumed = {"topic": "app-ids", "operation": "consumed"}
    assert metrics.registry.get_sample_value("steam_kafka_messages_total", consumed) == 1


async def test_garbage_between_seeds_is_routed_message_by_message(sent: Sent) -> None:
    async with intake.test_context() as agent:
        for raw in (b"10", b"junk", b"20", b"", b'{"app_id": 30}'):
            await processed(await agent.put(raw))

    assert [k for k, _ in sent.to(schedule_topic)] == [10, 20, 30]
    assert [f.raw for _, f in sent.to(app_ids_failed_topic)] == ["junk", ""]
