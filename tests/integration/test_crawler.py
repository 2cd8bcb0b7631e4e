"""The crawler in a real worker against the fake store: batching, limits, failures, bad input."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from steamprice.batches import partition_for
from tests.support.checks import appdetails_requests, metric_or_zero
from tests.support.fakes import FakeSteam
from tests.support.infra import KAFKA, wait_for
from tests.support.prices import read_by_partition
from tests.support.processes import Pipeline

REGIONS = ("us", "de", "jp")


async def count(pipeline: Pipeline, sql: str) -> int:
    rows = await pipeline.query(sql)
    return int(rows[0][0]) if rows else 0


async def check_partitions(pipeline: Pipeline, apps: list[int]) -> None:
    """Every batch record and every table key sits in the partition its app id hashes to.

    Faust writes a table key's changelog record to the partition of the event being processed:
    this is what the crawler's explicit partitions guarantee (steamprice.batches).
    """
    partitions = int(pipeline.env["TOPIC_PARTITIONS"])
    for short in ("prices-raw", "prices-normalized"):
        records = await read_by_partition(pipeline, pipeline.topic(short))
        assert len(records) < len(apps) * len(REGIONS)  # batches, not one record per app
        for partition, _, value in records:
            doc = json.loads(value)
            ids = [e[0] for e in doc["entries"]] if "entries" in doc else doc_ids(doc)
            assert {partition_for(a, partitions) for a in ids} == {partition}, short
    changelog = f"{pipeline.app_id}-price-state-changelog"

    async def every_key() -> list[tuple[int, bytes | None, bytes]]:
        keys = await read_by_partition(pipeline, changelog)
        # First observations: one write per key (changelog sends trail the sink a little).
        return keys if len(keys) == len(apps) * len(REGIONS) else []

    keys = await wait_for("every price-state key in its changelog", every_key, timeout=30)
    for partition, key, _ in keys:
        assert key is not None
        app_id = int(json.loads(key).split(":")[0])
        assert partition == partition_for(app_id, partitions), key


def doc_ids(doc: dict[str, object]) -> list[int]:
    return [int(o["app_id"]) for o in doc["observations"]]  # type: ignore[attr-defined, index]


async def test_every_region_is_priced_in_full_batches_and_a_round_is_deduplicated(
    pipeline: Pipeline, steam: FakeSteam, tmp_path: Path
) -> None:
    apps = list(range(1000, 1250))
    for app_id in apps:
        for cc in REGIONS:
            if app_id % 10 == 0:
                steam.set_no_price(app_id, cc)  # free/unreleased: data []
            elif app_id % 10 != 7:  # x7 apps stay unknown to the fake: success:false
                steam.set_price(app_id, cc, 1999, 999, 50)
    # One odd entry in the middle of a batch must not spoil its neighbours.
    steam.set_raw_entry(1111, "de", '{"success":true,"data":"oops"}')
    worker = pipeline.worker(STEAM_COUNTRIES=",".join(REGIONS), STEAM_BATCH_WAIT_SECONDS="2")
    await worker.start()
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# the test catalog\n" + "\n".join(map(str, apps)) + "\n\n")
    assert "Sent 250 app ids" in await pipeline.cli("seed", "--file", str(ids_file))
    # The seed topic holds one record per app, keyed by its id, where the partitioner puts it
    # (the CLI hands them to Kafka in record batches: topics.send_seeds).
    partitions = int(pipeline.env["TOPIC_PARTITIONS"])
    seeds = await read_by_partition(pipeline, pipeline.topic("app-ids"))
    assert sorted(int(value) for _, _, value in seeds) == apps
    assert all(key == value for _, key, value in seeds)
    assert {p for p, _, value in seeds} == set(range(partitions))
    assert all(p == partition_for(int(value), partitions) for p, _, value in seeds)

    async def all_rows() -> int:
        n = await count(pipeline, "SELECT COUNT(*) FROM price_current")
        return n if n == 750 else 0

    await wait_for("750 price_current rows", all_rows, timeout=45)
    statuses = dict(
        await pipeline.query("SELECT status, COUNT(*) FROM price_current GROUP BY status")
    )
    assert statuses == {"priced": 599, "no_price": 75, "unknown": 76}
    assert await pipeline.query(
        "SELECT status FROM price_current WHERE app_id = 1111 ORDER BY cc"
    ) == [("unknown",), ("priced",), ("priced",)]  # de odd; jp and us fine
    await check_partitions(pipeline, apps)

    requests = appdetails_requests(steam)
    per_region = Counter(r.query["cc"] for r in requests)  # type: ignore[attr-defined]
    assert per_region == {"us": 3, "de": 3, "jp": 3}  # ceil(250 / 100) per region
    assert sorted(r.n_appids for r in requests) == [50] * 3 + [100] * 6  # type: ignore[attr-defined]
    assert all(r.query["filters"] == "price_overview" for r in requests)  # type: ignore[attr-defined]
    assert steam.count_429 == 0

    # The same ids again while they are fresh: no second request now; each is coalesced into
    # one re-check at the end of the seed dedupe window (tests/integration/test_reseed.py).
    assert "Sent 250 app ids" in await pipeline.cli("seed", "--file", str(ids_file))

    async def metrics_page() -> str:
        text = await worker.metrics()
        coalesced = metric_or_zero(
            text, "steam_games_processed_total", task="schedule", status="recheck_coalesced"
        )
        return text if coalesced >= 250 else ""

    text = await wait_for("the second seeding to be coalesced", metrics_page)
    assert len(appdetails_requests(steam)) == 9
    assert metric_or_zero(text, "steam_queue_size", queue="tracked") == 250
    assert metric_or_zero(text, "steam_queue_size", queue="failed") == 0


@pytest.fixture
async def strict_steam() -> AsyncIterator[FakeSteam]:
    # Steam's limit scaled down 30x (10 requests per 10 s, penalty 16 s -> 1 s) and a short
    # fuse: 5 throttled answers within the window and the client is banned.
    async with FakeSteam(
        rate_limit=(10, 10.0), ban_after_429s=5, penalty_seconds=1.0, ban_seconds=60
    ) as fake:
        yield fake


async def test_a_worker_over_the_limit_pauses_and_is_never_banned(
    tmp_path: Path, strict_steam: FakeSteam
) -> None:
    pipeline = Pipeline(tmp_path, STEAM_STORE_URL=strict_steam.url, STEAM_API_URL=strict_steam.url)
    try:
        apps = list(range(1, 121))
        for app_id in apps:
            strict_steam.set_price(app_id, "us", 499, 499, 0)
        # Paced at twice the fake's rate, so it must run into 429s.
        worker = pipeline.worker(
            STEAM_BATCH_SIZE="10",
            STEAM_MAX_REQUESTS_PER_MINUTE="120",
            STEAM_BACKOFF_SECONDS="1.5",
            STEAM_BATCH_WAIT_SECONDS="0.3",
        )
        await worker.start()
        await pipeline.cli("seed", *map(str, apps))

        async def all_priced() -> int:
            n = await count(pipeline, "SELECT COUNT(*) FROM price_current WHERE status='priced'")
            return n if n == len(apps) else 0

        await wait_for("every app priced despite the 429s", all_priced, timeout=50)
        assert strict_steam.count_429 >= 1
        assert strict_steam.count_403 == 0 and not strict_steam.is_banned()
        assert strict_steam.requests_during_penalty == 0
        text = await worker.metrics()
        assert (
            metric_or_zero(
                text, "steam_rate_limit_pauses_total", endpoint="appdetails", reason="rate_limited"
            )
            >= 1
        )
        assert (
            metric_or_zero(text, "steam_api_requests_total", endpoint="appdetails", status="429")
            >= 1
        )
    finally:
        await pipeline.close()


async def test_failing_apps_move_to_the_failed_state_and_retry_failed_requeues_them(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    apps = [501, 502, 503, 504, 505, 506]
    for app_id in apps:
        steam.set_price(app_id, "us", 999, 999, 0)
    # 504's entry breaks the whole JSON answer: the client isolates it, the rest is priced.
    steam.set_raw_entry(504, None, '{"success":true,"data":{"price_overview":')
    worker = pipeline.worker(
        MAX_FAILURES="2",
        FAILED_RETRY_BASE_SECONDS="1",
        STEAM_RETRY_BASE_SECONDS="0.05",
        STEAM_BATCH_WAIT_SECONDS="1",
    )
    await worker.start()
    await pipeline.cli("seed", *map(str, apps))

    async def failed_app() -> list[dict[str, object]]:
        msgs = [json.loads(v) for _, v in await pipeline.read_topic("app-ids-failed") if v]
        return [m for m in msgs if m.get("app_id") == 504]

    [failed] = await wait_for("app 504 on app-ids-failed", failed_app, timeout=40)
    # First isolated from its batch ("breaks the JSON"), then failing alone ("not JSON").
    assert "2 failures" in str(failed["reason"]) and "JSON" in str(failed["reason"])
    priced = await pipeline.query("SELECT app_id FROM price_current ORDER BY app_id")
    assert [a for (a,) in priced] == [501, 502, 503, 505, 506]

    async def failed_gauge() -> str:
        text = await worker.metrics()
        return text if metric_or_zero(text, "steam_queue_size", queue="failed") == 1 else ""

    text = await wait_for("steam_queue_size{queue=failed} 1", failed_gauge)
    assert metric_or_zero(text, "steam_batch_fallbacks_total", reason="isolate") == 1
    # Parked: no more requests for 504 while it is failed.
    asked = sum("504" in r.query["appids"].split(",") for r in appdetails_requests(steam))  # type: ignore[attr-defined]

    steam.set_raw_entry(504, None, None)  # Steam fixed it

    # retry-failed reads the app-state changelog, which may land a moment after the gauge and
    # the app-ids-failed message: wait, as an operator would, until `status` counts it failed.
    async def failed_in_changelog() -> bool:
        status = json.loads(await pipeline.cli("status", "--json", "--worker-url", ""))
        return bool(status["apps"]["failed"] == 1)

    await wait_for("app 504 failed in the app-state changelog", failed_in_changelog)
    out = await pipeline.cli("retry-failed")
    assert "Re-enqueued 1 failed apps" in out

    async def healed() -> list[tuple[object, ...]]:
        return await pipeline.query("SELECT status FROM price_current WHERE app_id = 504")

    assert await wait_for("app 504 priced after retry-failed", healed) == [("priced",)]
    asked_after = sum("504" in r.query["appids"].split(",") for r in appdetails_requests(steam))  # type: ignore[attr-defined]
    assert asked_after == asked + 1
    text = await wait_for(
        "the failed gauge back to 0",
        lambda: _gauge_is(worker, "failed", 0),
    )
    assert text


async def _gauge_is(worker: object, queue: str, value: float) -> str:
    text = await worker.metrics()  # type: ignore[attr-defined]
    return text if metric_or_zero(text, "steam_queue_size", queue=queue) == value else ""


async def test_a_store_that_refuses_batches_is_priced_one_app_per_request(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    apps = [601, 602, 603, 604]
    for app_id in apps:
        steam.set_price(app_id, "us", 1500, 1500, 0)
    steam.batching_enabled = False  # Valve switched batching off: 400 null for any batch
    worker = pipeline.worker(STEAM_BATCH_WAIT_SECONDS="1")
    await worker.start()
    await pipeline.cli("seed", *map(str, apps))

    async def all_priced() -> int:
        n = await count(pipeline, "SELECT COUNT(*) FROM price_current WHERE status='priced'")
        return n if n == len(apps) else 0

    await wait_for("every app priced one by one", all_priced)
    sizes = [r.n_appids for r in appdetails_requests(steam)]  # type: ignore[attr-defined]
    assert sizes == [4, 1, 1, 1, 1]
    text = await worker.metrics()
    assert metric_or_zero(text, "steam_batch_fallbacks_total", reason="refused") == 1


GARBAGE: list[bytes] = [
    b"hello",
    b"-5",
    b"0",
    b"2147483648",
    b"7.5",
    b'{"app_id": 7.5}',
    b'{"appid": 10}',
    b"[10, 20]",
    b'"10"',
    b"\xff\xfe\x00",
    b"",
    b"x" * 5000,
    b"true",
    b"null",
]


async def test_a_flood_of_garbage_is_routed_counted_and_never_stops_the_worker(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    steam.set_price(10, "us", 999, 999, 0)
    steam.set_price(20, "us", 499, 499, 0)
    worker = pipeline.worker()
    await worker.start()
    flood = [GARBAGE[i % len(GARBAGE)] for i in range(3000)]
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=20)
    await producer.start()
    try:
        for value in [*flood[:1500], b"10", b'{"app_id": 20}', *flood[1500:]]:
            await producer.send(pipeline.topic("app-ids"), value)
        await producer.flush()
    finally:
        await producer.stop()

    async def counted() -> str:
        text = await worker.metrics()
        return (
            text
            if metric_or_zero(text, "steam_bad_input_total", source="seed", reason="invalid")
            >= 3000
            else ""
        )

    text = await wait_for("3000 bad seeds counted", counted, timeout=45)
    assert metric_or_zero(text, "steam_bad_input_total", source="seed", reason="invalid") == 3000

    async def priced() -> int:
        n = await count(pipeline, "SELECT COUNT(*) FROM price_current WHERE status='priced'")
        return n if n == 2 else 0

    await wait_for("the two good seeds priced", priced)
    rejected = [json.loads(v) for _, v in await pipeline.read_topic("app-ids-failed") if v]
    assert len(rejected) == 3000 and all(m["reason"] for m in rejected)
    assert max(len(str(m["raw"])) for m in rejected) <= 1024
    health = await worker.health()
    assert health is not None and health["consuming"] is True
    # Counted and routed one by one, but logged in moderation.
    log = worker.log()
    assert log.count("Rejected seed message") <= 40


async def test_steamspy_enriches_apps_at_one_request_per_second_and_never_prices(
    pipeline: Pipeline, steam: FakeSteam
) -> None:
    for app_id in (730, 440, 570):
        steam.set_price(app_id, "us", 1999, 1999, 0)
        steam.set_name(app_id, f"Game {app_id}")
    # The store says 4.99; SteamSpy (derived from the fake's catalog) says 19.99.
    steam.set_raw_entry(
        730,
        "us",
        '{"success":true,"data":{"price_overview":{"currency":"USD","initial":1999,'
        '"final":499,"discount_percent":75,"initial_formatted":"$19.99","final_formatted":"$4.99"}}}',
    )
    worker = pipeline.worker(ENABLE_STEAMSPY="true", STEAMSPY_URL=f"{steam.url}/api.php")
    await worker.start()
    await pipeline.cli("seed", "730", "440", "570", "999999")  # 999999: unknown everywhere

    async def enriched() -> list[tuple[object, ...]]:
        rows = await pipeline.query(
            "SELECT app_id, name, developer, publisher, owners, ccu, tags FROM apps"
            " WHERE tags IS NOT NULL ORDER BY app_id"
        )
        return rows if len(rows) == 4 else []

    rows = await wait_for("four apps described by SteamSpy", enriched, timeout=40)
    by_id = {r[0]: r for r in rows}
    assert by_id[730][1:4] == ("Game 730", "Studio 51", "Studio 51")
    assert by_id[730][4] == "1,000 .. 2,000" and by_id[730][5] == 730
    assert json.loads(str(by_id[730][6])) == {"Atmospheric": 300, "Puzzle": 200, "Story Rich": 100}
    assert by_id[999999][1:] == (None, None, None, None, None, "{}")
    # Prices come from the store only.
    assert await pipeline.query(
        "SELECT final_price FROM price_current WHERE app_id = 730 AND cc = 'us'"
    ) == [(499,)]
    spy = [r for r in steam.requests if r.path == "/api.php"]
    assert len(spy) == 4 and steam.steamspy_violations == []
    assert all(r.query["request"] == "appdetails" for r in spy)
