"""One state directory per pipeline, on the real broker, with the default DATA_DIR.

Two pipelines (two APP_IDs) run from one working directory side by side. A pipeline whose
Kafka was reset while its data directory was kept stops with one line naming the table, the
directory and the fix; ``steamprice reset-local-state`` (refused while the worker runs) lets it
start again, its tables rebuilt from the changelogs.
"""

from __future__ import annotations

import signal
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.infra import KAFKA, create_topic, delete_topic, delete_topics_of, wait_for
from tests.support.processes import Pipeline, seed_apps


def staged(tmp: Path, name: str, steam: FakeSteam, discord: FakeDiscord) -> Pipeline:
    (tmp / name).mkdir()
    return Pipeline(
        tmp / name,
        STEAM_STORE_URL=steam.url,
        STEAM_API_URL=steam.url,
        STEAMSPY_URL=f"{steam.url}/api.php",
        DISCORD_WEBHOOK_URL=discord.webhook_url("4243", "tok-local-state"),
    )


async def priced(pipeline: Pipeline, apps: range) -> None:
    async def all_rows() -> bool:
        rows = await pipeline.query("SELECT COUNT(*) FROM price_current")
        return bool(rows) and rows[0][0] == len(apps)

    await wait_for(f"{len(apps)} apps priced", all_rows, timeout=90)


async def reset_kafka(pipeline: Pipeline) -> None:
    """What an operator's Kafka reset does to a pipeline: its topics are gone (and with them the
    group's committed offsets)."""
    topics = await delete_topics_of(pipeline.app_id, pipeline.kafka)
    assert any(t.endswith("-changelog") for t in topics), topics

    async def gone() -> bool:
        return not await topics_left(topics)

    await wait_for("the topics to be deleted", gone, timeout=60)


async def topics_left(names: list[str]) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        return set(names) & set(await admin.list_topics())
    finally:
        await admin.close()


async def test_two_pipelines_from_one_directory_both_run(
    tmp_path: Path, steam: FakeSteam, discord: FakeDiscord
) -> None:
    prod, staging = staged(tmp_path, "prod", steam, discord), staged(tmp_path, "st", steam, discord)
    shared = tmp_path / "shared"
    try:
        for app in range(700, 720):
            steam.set_price(app, "us", 1999, 1999, 0)
        a = prod.worker("a", workdir=shared)
        await a.start()
        await seed_apps(prod, range(700, 710))
        await priced(prod, range(700, 710))
        b = staging.worker("b", workdir=shared)
        await b.start()
        await seed_apps(staging, range(710, 720))
        await priced(staging, range(710, 720))
        assert a.data_dir != b.data_dir and a.data_dir.parent == b.data_dir.parent
        assert (a.data_dir / "v1" / "tables").is_dir() and (b.data_dir / "v1" / "tables").is_dir()
        for w in (a, b):
            health = await w.health()
            assert health and health["consuming"], w.name
            assert "Traceback" not in w.log()
    finally:
        await prod.close()
        await staging.close()


async def test_a_reset_kafka_with_kept_data_stops_with_one_line_until_the_local_state_is_reset(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    apps = range(800, 830)
    for app in apps:
        steam.set_price(app, "us", 1999, 1999, 0)
    worker = pipeline.worker()
    await worker.start()
    await seed_apps(pipeline, apps)
    await priced(pipeline, apps)

    # While the worker runs, its state cannot be reset from under it.
    code, out = await pipeline.run_cli("reset-local-state", workdir=worker.workdir)
    assert code != 0 and "is in use by another worker" in out, out
    assert await worker.stop(signal.SIGTERM) == 0

    await reset_kafka(pipeline)
    log_before = len(worker.log())
    await worker.start(wait=False)
    assert await worker.exited() == 78
    log = worker.log()[log_before:]
    assert "Traceback" not in log, log[-5000:]
    [line] = [x for x in log.splitlines() if "CRITICAL" in x]
    assert "Local table state in" in line and str(worker.data_dir) in line
    assert "table '" in line and "-changelog partition" in line
    assert "steamprice reset-local-state" in line

    out = await pipeline.cli("reset-local-state", workdir=worker.workdir)
    assert f"Deleted the local table state of {pipeline.app_id} in {worker.data_dir}" in out
    instance = (worker.data_dir / "group-instance-id").read_text()
    await worker.start()
    # The group identity survived the reset; the tables were rebuilt (empty, like the cluster).
    assert (worker.data_dir / "group-instance-id").read_text() == instance
    await pipeline.query("DELETE FROM price_current")
    await seed_apps(pipeline, apps)
    await priced(pipeline, apps)
    assert "Traceback" not in worker.log()


async def test_a_closed_pipeline_leaves_no_topic_on_the_shared_broker(tmp_path: Path) -> None:
    """Test support: a pipeline deletes its topics when it closes (left behind, test runs gave
    the shared broker 16,588 partitions and a minute to start), and only its own."""
    pipeline = Pipeline(tmp_path)
    neighbour = f"{pipeline.app_id}0.app-ids"  # another APP_ID that only starts alike
    names = [pipeline.topic("app-ids"), f"{pipeline.app_id}-price-state-changelog", neighbour]
    for name in names:
        await create_topic(name, 1)
    try:
        await pipeline.close()

        async def only_the_neighbour() -> bool:
            return await topics_left(names) == {neighbour}

        await wait_for("the pipeline's topics to be deleted", only_the_neighbour, timeout=60)
    finally:
        await delete_topic(neighbour)
