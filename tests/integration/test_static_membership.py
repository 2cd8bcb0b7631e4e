"""Static group membership on the real broker (Kafka 4.1, aiokafka 0.14), production timeouts.

A worker joins with the group instance id kept in its data directory. Killed and restarted, it
takes its partitions back without a rebalance (the group's generation does not move) instead of
waiting for the broker to drop the dead process. A second worker with the same id, or on the
same data directory, is refused with one line and the first one keeps its partitions.
"""

from __future__ import annotations

import re
import signal

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocol

from tests.support.fakes import FakeSteam
from tests.support.infra import wait_for
from tests.support.processes import Pipeline, Worker, seed_apps

APPS = range(500, 540)
JOINED_RE = re.compile(r"Joined group '([^']+)' \(generation (\d+)\) with member_id (\S+)")


async def describe(pipeline: Pipeline, group: str) -> list[tuple[str, set[int]]]:
    """(member id, partitions of its assignment) of each member of ``group``, as the broker has
    them now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.kafka)
    await admin.start()
    try:
        response = (await admin.describe_consumer_groups([group]))[0]
        found = []
        for described in response.groups:
            for member in described[5]:
                assigned = ConsumerProtocol.ASSIGNMENT.decode(member[-1]) if member[-1] else None
                parts = {p for _, ps in assigned.assignment for p in ps} if assigned else set()
                found.append((str(member[0]), parts))
        return sorted(found)
    finally:
        await admin.close()


async def members(pipeline: Pipeline, group: str | None = None) -> list[str]:
    """Member ids of the workers' consumer group (or ``group``), as the broker has them now."""
    return [member for member, _ in await describe(pipeline, group or pipeline.app_id)]


def joins(worker: Worker, group: str | None = None) -> list[tuple[int, str]]:
    """(generation, member id) of every join of the workers' group (or ``group``) in the
    worker's log, oldest first."""
    want = group or worker.pipeline.app_id
    return [(int(g), m) for name, g, m in JOINED_RE.findall(worker.log()) if name == want]


async def all_priced(pipeline: Pipeline, since: str = "1970-01-01") -> bool:
    rows = await pipeline.query(
        "SELECT COUNT(*) FROM price_current WHERE observed_at > %s", (since,)
    )
    return bool(rows) and rows[0][0] == len(APPS)


PIPELINE_TOPICS = ("schedule", "crawl-requests", "prices-raw", "prices-normalized")


async def test_a_new_pipeline_is_assigned_every_topic_it_created(pipeline: Pipeline) -> None:
    """The first worker of a new pipeline creates its topics and is assigned all of them at once.

    A topic created a few milliseconds before the worker subscribes may still show no partition
    leaders; the group was then assigned without it (nothing read from it), until the
    consumer's next metadata refresh found it 10 s later and the group rebalanced, reading its
    first seconds of seeds again. The worker now waits for the leaders before subscribing.
    """
    w1 = pipeline.worker("w1")
    await w1.start()
    partitions = int(pipeline.env["TOPIC_PARTITIONS"])
    for short in PIPELINE_TOPICS:
        assert await w1.partitions(short) == set(range(partitions)), short
    assert [g for g, _ in joins(w1)] == [1]
    # The seed topic, read by the intake's own group (steamprice.seeds), which the worker joins
    # once it is ready (a moment after the Faust group): every partition, in its first join.
    intake = f"{pipeline.app_id}-intake"

    async def intake_assigned() -> list[tuple[str, set[int]]]:
        described = await describe(pipeline, intake)
        return described if described and all(parts for _, parts in described) else []

    [(_, seeds)] = await wait_for("the seed intake assigned in its group", intake_assigned, 30)
    assert seeds == set(range(partitions))
    assert [g for g, _ in joins(w1, intake)] == [1]


async def test_a_restarted_worker_rejoins_without_a_rebalance_and_a_twin_is_refused(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    for app in APPS:
        steam.set_price(app, "us", 999, 999, 0)
    w1 = pipeline.worker("w1")
    await w1.start()
    instance = (w1.data_dir / "group-instance-id").read_text().strip()
    assert f"as static member {instance}" in w1.log()
    # The broker names a static member after its instance id (what the twin check relies on).
    [member] = await members(pipeline)
    assert member.startswith(f"{instance}-")
    assert (w1.data_dir / "group-member-id").read_text().strip() == member
    await seed_apps(pipeline, APPS)
    await wait_for("every app priced", lambda: all_priced(pipeline), timeout=60)
    generation = joins(w1)[-1][0]
    intake = f"{pipeline.app_id}-intake"
    intake_generation, intake_member = joins(w1, intake)[-1]
    assert intake_member.startswith(f"{instance}-intake-")

    # Killed and restarted at once: the same id takes the dead member's place, and its
    # partitions, in the generation the group already had (no rebalance, no wait).
    await w1.stop(signal.SIGKILL)
    await w1.start()
    again, new_member = joins(w1)[-1]
    assert again == generation and new_member != member
    assert await members(pipeline) == [new_member]
    # So does the seed intake's member of its own group.
    intake_again, new_intake_member = joins(w1, intake)[-1]
    assert intake_again == intake_generation and new_intake_member != intake_member
    assert await members(pipeline, intake) == [new_intake_member]
    assert (w1.data_dir / "group-member-id").read_text().strip() == new_member

    # A twin: another directory, the same GROUP_INSTANCE_ID. Refused, with one line.
    twin = pipeline.worker("twin", GROUP_INSTANCE_ID=instance)
    await twin.start(wait=False)
    assert await twin.exited() == 78
    critical = [line for line in twin.log().splitlines() if "CRITICAL" in line]
    assert len(critical) == 1, twin.log()[-3000:]
    assert f"Group instance id '{instance}' is held by another live worker" in critical[0]
    assert new_member in critical[0] and "GROUP_INSTANCE_ID" in critical[0]
    assert "Traceback" not in twin.log()
    # A second worker on the first one's data directory: refused before it joins.
    same_dir = pipeline.worker("same-dir", workdir=w1.workdir)
    await same_dir.start(wait=False)
    assert await same_dir.exited() == 78
    assert f"Data directory {w1.data_dir} is in use by another worker" in same_dir.log()
    assert "Traceback" not in same_dir.log()

    # The first worker was never fenced: same member, still consuming, still pricing.
    assert await members(pipeline) == [new_member]
    assert joins(w1)[-1] == (generation, new_member)
    health = await w1.health()
    assert health and health["consuming"]
    for app in APPS:
        steam.set_price(app, "us", 999, 499, 50)
    mark = (await pipeline.query("SELECT UTC_TIMESTAMP(6)"))[0][0]
    await pipeline.cli("seed", *map(str, APPS))
    await wait_for("every app priced again", lambda: all_priced(pipeline, mark), timeout=150)
