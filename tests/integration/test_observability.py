"""Observability on a real worker: a private Prometheus scrapes it and evaluates every dashboard
query and alert rule; ``steamprice status`` reads Kafka, MySQL and the worker; no web page shows
a secret or accepts a write.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiomysql
import pytest
import yaml

from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.infra import MYSQL, free_port, wait_for
from tests.support.monitoring import (
    PROMETHEUS_DIR,
    grafana_expr,
    operations_dashboard,
    panel_queries,
)
from tests.support.processes import Pipeline, Worker

SCRAPE_SECONDS = 1.0
# Panels that may rightly be empty after a healthy run: no MySQL outage happened.
# Queries with no series unless something goes wrong or a rule is turned off: no sink retries,
# no channel ever falls behind enough to post digests, and no alert rule is disabled here.
MAY_BE_EMPTY = {
    ("Sink retries", "A"),
    ("Discord backlog by channel", "D"),
    ("Alert rules: changes by rule and outcome", "B"),
}

Series = list[dict[str, Any]]


def finite(series: Series) -> list[float]:
    return [float(v) for s in series for _, v in s["values"] if math.isfinite(float(v))]


def by_label(series: Series, label: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for s in series:
        out.setdefault(s["metric"].get(label, ""), []).extend(
            float(v) for _, v in s["values"] if math.isfinite(float(v))
        )
    return out


def last(series: Series) -> float:
    assert series, "no series"
    return float(series[0]["values"][-1][1])


# What the key panels must show after the traffic below (title -> refId -> check).
PANEL_CHECKS: dict[str, dict[str, Callable[[Series], object]]] = {
    "Pipeline status": {"A": lambda s: last(s) == 1},
    "Store API success rate": {"A": lambda s: any(0 < v <= 1 for v in finite(s))},
    "Last successful store response": {"A": lambda s: 0 <= last(s) < 120},
    "Discord webhook": {"A": lambda s: last(s) == 2},  # configured + enabled: "on"
    "Games processed by task and status": {
        "A": lambda s: (
            max(by_label(s, "task")["crawl"]) > 0
            and {"schedule", "crawl", "normalize"} <= set(by_label(s, "task"))
        )
    },
    "API requests by endpoint and status": {
        "A": lambda s: (
            {("appdetails", "200"), ("appdetails", "429"), ("discord", "429")}
            <= {(x["metric"]["endpoint"], x["metric"]["status"]) for x in s}
        )
    },
    "HTTP response time p95": {
        "A": lambda s: {"appdetails", "discord"} <= set(by_label(s, "endpoint"))
    },
    "Kafka messages by topic": {
        "A": lambda s: "app-ids" in by_label(s, "topic"),
        "B": lambda s: len(s) >= 5,  # Faust's counters: every consumed topic
        "C": lambda s: len(s) >= 5,
    },
    "Task duration p95": {"A": lambda s: bool(by_label(s, "task").get("crawl"))},
    "Queue sizes": {
        "A": lambda s: (
            max(by_label(s, "queue")["tracked"]) == 5 and max(by_label(s, "queue")["failed"]) == 1
        )
    },
    "Consumer lag by topic": {
        "A": lambda s: (
            {"app-ids", "schedule", "crawl-requests", "prices-raw", "prices-normalized"}
            <= set(by_label(s, "topic"))
        )
    },
    "Rate-limit pauses": {
        "A": lambda s: max(by_label(s, "reason")["rate_limited"]) > 0,
        "B": lambda s: max(finite(s)) > 0,
    },
    "Discord deliveries by status": {"A": lambda s: "sent" in by_label(s, "status")},
    "Discord 429s": {"A": lambda s: bool(finite(s))},
    "Time since last success by endpoint": {
        "A": lambda s: {"appdetails", "discord"} <= set(by_label(s, "endpoint"))
    },
    "Price changes by kind": {"A": lambda s: "discount_started" in by_label(s, "kind")},
    "Bad input": {"A": lambda s: "seed" in by_label(s, "source")},
    "Table keys": {"A": lambda s: {"app-state", "price-state"} <= set(by_label(s, "table"))},
    "Batch sizes": {"A": lambda s: "crawl" in by_label(s, "task")},
}


class Prometheus:
    """A private Prometheus scraping one worker every second, with the project's alert rules."""

    def __init__(self, tmp: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tmp / "prometheus"
        self.dir.mkdir()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(PROMETHEUS_DIR / "alerts.yml")],
            "scrape_configs": [
                {"job_name": "steamprice", "static_configs": [{"targets": [target]}]}
            ],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = (self.dir / "prometheus.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            "prometheus",
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        log.close()

        async def ready() -> bool:
            try:
                async with aiohttp.ClientSession() as s, s.get(f"{self.url}/-/ready") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for("the private Prometheus to be ready", ready, timeout=30)

    async def api(self, path: str, **params: str) -> Any:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{self.url}/api/v1/{path}", params=params) as r,
        ):
            body = await r.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


@pytest.fixture
async def secrets(pipeline: Pipeline) -> AsyncIterator[dict[str, str]]:
    """A MySQL user with a password for the worker, plus a webhook token and a Steam key."""
    tag = uuid.uuid4().hex[:12]
    user, password = f"obs_{tag}", f"db-pass-{tag}"
    conn = await aiomysql.connect(**MYSQL, autocommit=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
            await cur.execute(f"GRANT ALL PRIVILEGES ON `{pipeline.db}`.* TO '{user}'@'127.0.0.1'")
        yield {
            "MYSQL_USER": user,
            "MYSQL_PASSWORD": password,
            "token": f"webhook-token-{tag}",
            "STEAM_API_KEY": f"steam-key-{tag}",
        }
    finally:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        conn.close()


async def run_status(pipeline: Pipeline, *args: str) -> tuple[int, str]:
    """``steamprice status ARGS`` with the pipeline's settings; stdout only (logs go apart)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "steamprice",
        "status",
        *args,
        env={**pipeline.env, "DATA_DIR": str(pipeline.tmp / "cli-data")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=pipeline.tmp,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    if proc.returncode not in (0, 1):
        raise AssertionError(f"status exited {proc.returncode}:\n{err.decode()}")
    return proc.returncode, out.decode()


async def drive_traffic(
    pipeline: Pipeline, worker: Worker, steam: FakeSteam, discord: FakeDiscord
) -> None:
    """Seeds (one garbage), a 429 from Steam and from Discord, a price change, a failed app."""
    steam.set_price(10, "us", 999, 999, 0)
    steam.set_price(10, "gb", 719, 719, 0)
    steam.set_price(20, "us", 499, 499, 0)
    steam.set_price(20, "gb", 399, 399, 0)
    steam.set_no_price(570)
    steam.fail_next(1, "429")
    await pipeline.cli("seed", "10", "20", "570", "999999")
    await pipeline.send_raw("app-ids", [b"not an app id"])

    async def priced() -> bool:
        return len(await pipeline.query("SELECT * FROM price_current")) == 8

    await wait_for("8 price_current rows", priced)

    steam.set_price(10, "us", 999, 499, 50)
    discord.fail_next(1, "global429")
    await pipeline.cli("seed", "10")

    async def notified() -> bool:
        return bool(discord.messages)

    await wait_for("a Discord message", notified)

    # App 30: refused in both regions (400, not retryable for one app) -> failed at once. (A
    # price in one region would count as a success and heal it.)
    steam.fail_next(2, "400null")
    await pipeline.cli("seed", "30")

    async def one_failed() -> bool:
        return 'steam_queue_size{queue="failed"} 1.0' in await worker.metrics()

    await wait_for("app 30 to fail", one_failed)


async def check_dashboard(prom: Prometheus, started: float) -> None:
    """Every panel query through the HTTP API as Grafana sends it: parses; key panels show data."""

    async def scraped_everything() -> bool:
        data = await prom.api("query", query='steam_queue_size{queue="failed"} == 1')
        lag = await prom.api("query", query="steam_consumer_lag_messages")
        return bool(data["result"]) and bool(lag["result"])

    await wait_for("Prometheus to scrape the final state", scraped_everything, timeout=30)
    end = time.time()
    start = end - int(end - started)  # whole steps back from now: the last point is now
    empty, checked = [], set()
    for title, ref, expr in panel_queries(operations_dashboard()):
        query = grafana_expr(
            expr, interval=SCRAPE_SECONDS, scrape=SCRAPE_SECONDS, range_=end - started
        )
        data = await prom.api(
            "query_range", query=query, start=f"{start:.3f}", end=f"{end:.3f}", step="1s"
        )
        series: Series = data["result"]
        if not finite(series):
            empty.append((title, ref))
            continue
        check = PANEL_CHECKS.get(title, {}).get(ref)
        if check is not None:
            assert check(series), f"{title} ({ref}): {query}\n{json.dumps(series)[:2000]}"
            checked.add((title, ref))
    assert set(empty) <= MAY_BE_EMPTY, f"panels without data: {empty}"
    expected = {(t, r) for t, refs in PANEL_CHECKS.items() for r in refs}
    assert checked == expected, f"checks that did not run: {expected - checked}"


async def check_alert_rules(prom: Prometheus) -> None:
    """The rules load into a real Prometheus and evaluate without error; none fires."""
    rules = [r for g in (await prom.api("rules"))["groups"] for r in g["rules"]]
    names = {r["name"] for r in rules}
    assert {"PipelineDown", "CrawlStalled", "ConsumerLagHigh", "WebhookDisabled"} <= names

    async def evaluated() -> bool:
        data = await prom.api("rules")
        return all(
            not r.get("lastEvaluation", "0001").startswith("0001")
            for g in data["groups"]
            for r in g["rules"]
        )

    await wait_for("every rule to be evaluated", evaluated, timeout=10)
    rules = [r for g in (await prom.api("rules"))["groups"] for r in g["rules"]]
    for rule in rules:
        assert rule["health"] == "ok", rule
    alerts = (await prom.api("alerts"))["alerts"]
    assert [a for a in alerts if a["state"] == "firing"] == []


async def check_status_command(pipeline: Pipeline, worker: Worker) -> None:
    code, out = await run_status(pipeline, "--json", "--worker-url", worker.url)
    report = json.loads(out)
    assert code == 0 and report["problems"] == [], out
    assert report["apps"] == {
        "tracked": 5,
        "due": 0,
        "in_flight": 0,
        "failed": 1,
        "failed_app_ids": [30],
        "rechecks": 0,
        "next_recheck_at": None,
    }
    regions = {r["cc"]: r for r in report["regions"]}
    assert set(regions) == {"us", "gb"}
    # Four apps answered in both regions; app 30 in neither.
    for cc in ("us", "gb"):
        assert (regions[cc]["rows"], regions[cc]["swept"], regions[cc]["progress"]) == (4, 4, 1.0)
    assert set(report["last_success"]) >= {"appdetails", "discord"}
    assert all(s["age_seconds"] < 120 for s in report["last_success"].values())
    assert report["worker"]["reachable"] and report["worker"]["consuming"]
    assert report["discord"]["configured"] is True and report["discord"]["state"] == "on"
    assert report["discord"]["deliveries"].get("sent", 0) >= 1

    code, text = await run_status(pipeline, "--worker-url", worker.url)
    assert code == 0, text
    assert "5 tracked, 0 due now, 0 being priced, 1 failed (30)" in text
    assert "appdetails" in text and "webhook on" in text and "Problems      none" in text

    # A worker that does not answer is a problem (exit 1), the rest is still reported.
    code, out = await run_status(
        pipeline, "--json", "--worker-url", f"http://127.0.0.1:{free_port()}"
    )
    report = json.loads(out)
    assert code == 1 and [p.split(":")[0] for p in report["problems"]] == ["worker"]
    assert report["apps"]["tracked"] == 5 and report["last_success"] is None


async def check_web_pages(worker: Worker, secrets: dict[str, str]) -> None:
    """No page shows a secret; no page accepts a write (405) and nothing changes."""
    leaks = [secrets["MYSQL_PASSWORD"], secrets["token"], secrets["STEAM_API_KEY"]]
    pages = [
        "/",
        "/assignment/",
        "/router/",
        "/router/topics",
        "/router/app-state/",
        "/router/app-state/10/",
        "/table/",
        "/table/app-state/",
        "/table/app-state/10/",
        "/table/price-state/",
        "/metrics",
        "/health",
        "/graph/",
        "/performance/",
    ]
    async with aiohttp.ClientSession() as s:
        before = {}
        for page in pages:
            async with s.get(worker.url + page) as r:
                body = await r.text()
                before[page] = (r.status, body if page not in ("/", "/metrics", "/health") else "")
                for secret in leaks:
                    assert secret not in body, f"GET {page} shows a secret"
        assert before["/health"][0] == 200 and before["/metrics"][0] == 200
        assert before["/"][0] == 200, "the stats page is on"
        for page in pages:
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                async with s.request(method, worker.url + page, data=b"{}") as r:
                    assert r.status in (404, 405), f"{method} {page} answered {r.status}"
        for page, (status, body) in before.items():
            if body:
                async with s.get(worker.url + page) as r:
                    assert (r.status, await r.text()) == (status, body), page
    assert not any(secret in worker.log() for secret in leaks), "a secret reached the log"


async def test_dashboard_alerts_status_and_web_pages(
    pipeline: Pipeline,
    steam: FakeSteam,
    discord: FakeDiscord,
    secrets: dict[str, str],
    tmp_path: Path,
) -> None:
    discord.global_retry_after = 0.2
    worker = pipeline.worker(
        STEAM_COUNTRIES="us,gb",
        SEED_DEDUPE_SECONDS="0",
        MAX_FAILURES="1",
        STEAM_BACKOFF_SECONDS="0.2",
        MYSQL_USER=secrets["MYSQL_USER"],
        MYSQL_PASSWORD=secrets["MYSQL_PASSWORD"],
        DISCORD_WEBHOOK_URL=discord.webhook_url("4242", secrets["token"]),
        STEAM_API_KEY=secrets["STEAM_API_KEY"],
    )
    await worker.start()
    prom = Prometheus(tmp_path, f"127.0.0.1:{worker.port}")
    try:
        await prom.start()
        started = time.time()

        async def first_scrape() -> bool:
            data = await prom.api("query", query='steam_pipeline_status{pipeline="worker"} == 1')
            return bool(data["result"])

        # Traffic only after the first scrape: a rate cannot show what happened before it.
        await wait_for("the first scrape", first_scrape, timeout=30)
        await drive_traffic(pipeline, worker, steam, discord)
        await check_dashboard(prom, started)
        await check_alert_rules(prom)
        await check_status_command(pipeline, worker)
        await check_web_pages(worker, secrets)
    finally:
        await prom.stop()
