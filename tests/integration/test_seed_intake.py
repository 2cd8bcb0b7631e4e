"""The seed topic's own consumer group (``<APP_ID>-intake``, ``steamprice.seeds``) on the real
broker: an upgrade from the Faust agent that read it before takes up where that left off, and
the seed backlog is measured as the other topics' is; ``steamprice seed`` sends without Faust
once the topics exist."""

from __future__ import annotations

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.support.checks import appdetails_requests
from tests.support.fakes import FakeSteam
from tests.support.infra import committed_offsets, wait_for
from tests.support.processes import Pipeline

OLD = list(range(10_001, 10_041))  # taken in by the previous release's agent
NEW = list(range(20_001, 20_041))  # seeded since


async def commit_to_the_end(pipeline: Pipeline, group: str, short: str) -> dict[int, int]:
    """Commit every partition of a topic at its end in ``group`` (as a consumer that read it
    all would have); the offsets by partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=pipeline.kafka, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        name = pipeline.topic(short)
        tps = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit(ends)
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        await consumer.stop()


async def test_an_upgrade_takes_up_the_seed_topic_where_the_faust_agent_left_it(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    for app_id in OLD + NEW:
        steam.set_price(app_id, "us", 999, 999, 0)
    assert f"Sent {len(OLD)} app ids" in await pipeline.cli("seed", *map(str, OLD))
    # The previous release read the seed topic with an agent of the workers' Faust group.
    done = await commit_to_the_end(pipeline, pipeline.app_id, "app-ids")
    assert sum(done.values()) == len(OLD)
    assert f"Sent {len(NEW)} app ids" in await pipeline.cli("seed", *map(str, NEW))

    worker = pipeline.worker()
    await worker.start()

    async def new_apps_priced() -> bool:
        rows = await pipeline.query("SELECT app_id FROM price_current")
        return {r[0] for r in rows} >= set(NEW)

    await wait_for("the apps seeded since to be priced", new_apps_priced, timeout=120)
    # Each partition is read in order: what came before the new seeds was skipped, not late.
    asked = {int(a) for r in appdetails_requests(steam) for a in r.query["appids"].split(",")}
    assert asked & set(OLD) == set()
    assert "where group" in worker.log()

    async def intake_committed() -> bool:
        offsets = await committed_offsets(pipeline, "app-ids")
        return all(done == end for done, end in offsets.values())

    await wait_for("the intake group to commit the seed topic", intake_committed, timeout=30)

    async def seed_lag_reported() -> bool:
        return 'steam_consumer_lag_messages{topic="app-ids"} 0.0' in await worker.metrics()

    await wait_for("the seed backlog to be measured", seed_lag_reported, timeout=30)


async def test_seed_sends_without_faust_once_the_topics_exist(pipeline: Pipeline) -> None:
    # Before any worker: the Faust command line creates the topics (with their partitions).
    assert "Sent 1 app ids" in await pipeline.cli("seed", "730")
    quick = (
        "import sys\n"
        "from steamprice.seeding import quick_seed\n"
        "assert quick_seed(sys.argv[1:]), 'left to the Faust command line'\n"
        "assert 'faust' not in sys.modules, 'Faust imported'\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        quick,
        "570",
        "440",
        "570",
        env=pipeline.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=pipeline.tmp,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, out.decode()
    topic = pipeline.topic("app-ids")
    assert out.decode().strip() == f"Sent 2 app ids to {topic} (1 duplicates dropped)"
    # As the Faust path sends them: keyed and valued by the id, in the key's partition.
    records = await pipeline.read_topic("app-ids")
    assert sorted(records) == [(b"440", b"440"), (b"570", b"570"), (b"730", b"730")]
