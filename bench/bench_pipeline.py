"""Two real daily snapshots through normalize -> detect -> MySQL on one worker, both designs.

The full 2025-08-17 snapshot (every observation new: the first sweep), then the 2025-08-18 one
(a re-sweep: about 700 real changes among ~261k apps), is produced straight onto ``prices-raw``
as the crawler would publish it, and the clock runs until the worker has taken in every app:

* **batches** (this tree): one record per Steam answer and partition, the shape the crawler
  sends during a sweep since it asks Steam for 100 apps of one partition at a time; done when
  every app has its row in ``price_current`` (pass 1) and its check in ``price_checks`` (pass 2).
* **mixed** (``BENCH_DESIGNS=batches,mixed,per-record``): this tree fed as the crawler did
  before its requests were grouped by partition: 100 apps of any partitions per request, so a
  record holds the ~12 of them of one partition (at 8 partitions); a trickle still looks so.
* **per-record** (the design before, run from git): one record per app, keyed by app id; done
  when every app's ``price_current.observed_at`` reached the pass's fetch time. Its code is
  checked out of git (``BENCH_BASELINE_REF``, default the last commit before the redesign)
  into a temporary worktree and its worker started from there, so the product keeps one
  code path and the comparison is measured in the same run, on the same machine state.

Per pass: observations/s, worker CPU (user + system) per observation, peak RSS; then the worker
is restarted with its tables populated and the time until it processes a new record is taken.
Goals (worker CPU on one worker): re-sweep <= 50 us/observation, first sweep <= 200 us,
>= 5,000 observations/s in both, RSS <= 500 MB, restart to processing <= 30 s.
``BENCH_APPS=N`` takes the first N apps of each snapshot; ``BENCH_DESIGNS=batches`` runs one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.pyspy import Profile
from steamprice.batches import RawBatch, by_partition, raw_record
from steamprice.settings import Settings
from tests.support.infra import KAFKA, wait_for
from tests.support.processes import Pipeline, Worker
from tests.support.replay import SNAPSHOTS, Price, read_snapshot, shared_data_dir

BASELINE_REF = "92e4373"  # support: the record-per-observation design, before issue 12
# What operators run: the test pipelines shorten these (4 partitions, a 1 s tick ...), and the
# number of partitions decides how many observations a batch record holds.
PRODUCTION = {
    "TOPIC_PARTITIONS": str(Settings.topic_partitions),
    "SCHEDULE_TICK_SECONDS": str(Settings.schedule_tick_seconds),
    "STEAM_BATCH_WAIT_SECONDS": str(Settings.steam_batch_wait_seconds),
    "SINK_BATCH_SECONDS": str(Settings.sink_batch_seconds),
}
PARTITIONS = Settings.topic_partitions
REQUEST_APPS = Settings.steam_batch_size  # apps per appdetails request
GOALS = {"first": 200.0, "resweep": 50.0}  # worker CPU us per observation
GOAL_RATE, GOAL_RSS, GOAL_RESTART = 5000.0, 500.0, 30.0


def entry(price: Price) -> str:
    status, initial, final, discount = price
    if status != "priced":
        return '{"success":true,"data":[]}'
    return json.dumps(
        {
            "success": True,
            "data": {
                "price_overview": {
                    "currency": "USD",
                    "initial": initial,
                    "final": final,
                    "discount_percent": discount,
                    "initial_formatted": "",
                    "final_formatted": "",
                }
            },
        },
        separators=(",", ":"),
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: unlike wall time, barely moved by other load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


Produce = Callable[[AIOKafkaProducer, str, dict[int, Price], datetime], Awaitable[int]]


async def send_raw(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    prices: dict[int, Price],
    ids: list[int],
    at: datetime,
) -> None:
    batch = RawBatch("us", at, [(a, entry(prices[a])) for a in ids])
    value = json.dumps(raw_record(batch), separators=(",", ":")).encode()
    await producer.send(topic, value, partition=partition)


async def produce_batches(
    producer: AIOKafkaProducer, topic: str, prices: dict[int, Price], at: datetime
) -> int:
    """As the crawler sends a sweep: requests of 100 apps of one partition, one record each.

    The partitions take turns, as the crawler's queue serves the one that has waited longest.
    """
    per_partition = [
        [(partition, ids[i : i + REQUEST_APPS]) for i in range(0, len(ids), REQUEST_APPS)]
        for partition, ids in sorted(by_partition(sorted(prices), PARTITIONS).items())
    ]
    requests = [r for turn in zip_longest(*per_partition) for r in turn if r is not None]
    for partition, ids in requests:
        await send_raw(producer, topic, partition, prices, ids, at)
    return len(requests)


async def produce_mixed(
    producer: AIOKafkaProducer, topic: str, prices: dict[int, Price], at: datetime
) -> int:
    """As the crawler sent an answer before requests were grouped by partition: 100 apps of any
    partitions per request, one record per partition of them (about 12 apps at 8 partitions)."""
    ids = sorted(prices)
    records = 0
    for i in range(0, len(ids), REQUEST_APPS):
        for partition, group in by_partition(ids[i : i + REQUEST_APPS], PARTITIONS).items():
            await send_raw(producer, topic, partition, prices, group, at)
            records += 1
    return records


async def produce_singles(
    producer: AIOKafkaProducer, topic: str, prices: dict[int, Price], at: datetime
) -> int:
    """As the crawler sent them before: one ``RawPrice`` per app, keyed by app id."""
    stamp = at.isoformat()
    for app_id in sorted(prices):
        value = json.dumps(
            {"app_id": app_id, "cc": "us", "fetched_at": stamp, "entry": entry(prices[app_id])},
            separators=(",", ":"),
        ).encode()
        await producer.send(topic, value, key=str(app_id).encode())
    return len(prices)


async def count_checked(pipeline: Pipeline, since: datetime) -> int:
    rows = await pipeline.query(
        "SELECT COALESCE(SUM(apps), 0) FROM price_checks WHERE checked_at >= %s",
        (since.replace(tzinfo=None),),
    )
    return int(rows[0][0]) if rows else 0


async def count_observed(pipeline: Pipeline, since: datetime) -> int:
    rows = await pipeline.query(
        "SELECT COUNT(*) FROM price_current WHERE observed_at >= %s",
        (since.replace(tzinfo=None),),
    )
    return int(rows[0][0]) if rows else 0


@dataclass
class Design:
    name: str
    produce: Produce
    done: Callable[[Pipeline, datetime], Awaitable[int]]
    env: dict[str, str] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)


async def timed_pass(
    design: Design, pipeline: Pipeline, worker: Worker, prices: dict[int, Price], label: str
) -> None:
    assert worker.proc is not None
    pid = worker.proc.pid
    at = datetime.now(UTC)
    cpu_before = cpu_seconds(pid)
    started = time.monotonic()
    n = len(prices)
    last = [time.monotonic()]

    async def all_in() -> bool:
        got = await design.done(pipeline, at)
        if time.monotonic() - last[0] > 15:
            last[0] = time.monotonic()
            print(f"    {got:,}/{n:,} after {time.monotonic() - started:.0f} s", flush=True)
        return got >= n

    async with Profile(pid, f"pipeline-{design.name}-{label}"):
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=20, max_batch_size=1 << 20)
        await producer.start()
        try:
            records = await design.produce(producer, pipeline.topic("prices-raw"), prices, at)
            await producer.flush()
        finally:
            await producer.stop()
        print(f"  {design.name} {label}: produced {n:,} observations in {records:,} records")
        await wait_for(f"{design.name} {label}: every observation", all_in, timeout=7200, every=0.5)
        seconds = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu_before
    design.figures[f"{label}_per_second"] = n / seconds
    design.figures[f"{label}_cpu_us"] = cpu / n * 1e6
    design.figures[f"{label}_rss_mb"] = peak_rss_mb(pid)
    print(
        f"  {design.name} {label}: {n / seconds:,.0f} observations/s, "
        f"{cpu / n * 1e6:,.0f} us CPU per observation, peak RSS {peak_rss_mb(pid):.0f} MB"
    )


async def restart(design: Design, pipeline: Pipeline, worker: Worker, probe_app: int) -> None:
    await worker.stop()
    began = time.monotonic()
    await worker.start(wait=False)
    at = datetime.now(UTC) + timedelta(seconds=1)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
    await producer.start()
    try:
        await design.produce(
            producer, pipeline.topic("prices-raw"), {probe_app: ("priced", 999, 999, 0)}, at
        )
        await producer.flush()
    finally:
        await producer.stop()

    async def probe_row() -> bool:
        return bool(
            await pipeline.query("SELECT 1 FROM price_current WHERE app_id = %s", (probe_app,))
        )

    await wait_for("the worker to process again after a restart", probe_row, timeout=600)
    design.figures["restart_seconds"] = time.monotonic() - began
    print(f"  {design.name}: restart to processing {design.figures['restart_seconds']:.1f} s")


def discard_state(pipeline: Pipeline) -> None:
    """Remove the workers' folders (RocksDB, tens of MB a run) once the pipeline is closed;
    their logs, whose paths the benchmark prints, stay."""
    for worker in pipeline.workers:
        shutil.rmtree(worker.workdir, ignore_errors=True)


async def run_design(design: Design, days: list[dict[int, Price]]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-pipeline-{design.name}-"))
    pipeline = Pipeline(tmp, ENABLE_DISCORD="false", **PRODUCTION)
    worker = pipeline.worker("w1", **design.env)
    try:
        await worker.start()
        await timed_pass(design, pipeline, worker, days[0], "first")
        await timed_pass(design, pipeline, worker, days[1], "resweep")
        await restart(design, pipeline, worker, max(max(d) for d in days) + 1)
    finally:
        print(f"  worker log: {worker.log_path}")
        await pipeline.close()
        discard_state(pipeline)


def checkout(ref: str) -> Path:
    """A temporary git worktree of ``ref`` (the previous design's code)."""
    root = Path(__file__).resolve().parents[1]
    path = Path(tempfile.mkdtemp(prefix="bench-baseline-")) / "src"
    subprocess.run(
        ["git", "-C", str(root), "worktree", "add", "--detach", str(path), ref],
        check=True,
        capture_output=True,
    )
    return path


def remove_checkout(path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        ["git", "-C", str(root), "worktree", "remove", "--force", str(path)], capture_output=True
    )
    shutil.rmtree(path.parent, ignore_errors=True)


def table(designs: list[Design]) -> str:
    rows = [
        ("first sweep: observations/s", "first_per_second", f">= {GOAL_RATE:,.0f}", ",.0f"),
        ("first sweep: CPU us/observation", "first_cpu_us", f"<= {GOALS['first']:.0f}", ",.0f"),
        ("re-sweep: observations/s", "resweep_per_second", f">= {GOAL_RATE:,.0f}", ",.0f"),
        ("re-sweep: CPU us/observation", "resweep_cpu_us", f"<= {GOALS['resweep']:.0f}", ",.0f"),
        ("peak RSS MB", "resweep_rss_mb", f"<= {GOAL_RSS:.0f}", ",.0f"),
        ("restart to processing s", "restart_seconds", f"<= {GOAL_RESTART:.0f}", ".1f"),
    ]
    head = f"{'':34}" + "".join(f"{d.name:>14}" for d in designs) + f"{'goal':>10}"
    lines = [head]
    for label, key, goal, fmt in rows:
        cells = "".join(
            f"{format(d.figures[key], fmt):>14}" if key in d.figures else f"{'-':>14}"
            for d in designs
        )
        lines.append(f"{label:34}{cells}{goal:>10}")
    old = designs[-1]
    for new in designs[:-1]:
        if old.name != "per-record" or not all("resweep_cpu_us" in d.figures for d in (new, old)):
            continue
        for key in ("first_cpu_us", "resweep_cpu_us"):
            lines.append(
                f"{key}: per-record / {new.name} = {old.figures[key] / new.figures[key]:.1f}x"
            )
    return "\n".join(lines)


async def main() -> dict[str, object]:
    data = shared_data_dir()
    if data is None:
        print("skipped: set STEAMPRICE_SHARED_DATA to the folder with " + ", ".join(SNAPSHOTS))
        return {"skipped": True}
    days = [read_snapshot(data / name) for name in SNAPSHOTS]
    limit = int(os.environ.get("BENCH_APPS", "0"))
    if limit:
        days = [dict(sorted(d.items())[:limit]) for d in days]
    wanted = os.environ.get("BENCH_DESIGNS", "batches,per-record").split(",")
    designs = []
    if "batches" in wanted:
        designs.append(Design("batches", produce_batches, count_checked))
    if "mixed" in wanted:
        designs.append(Design("mixed", produce_mixed, count_checked))
    baseline: Path | None = None
    try:
        if "per-record" in wanted:
            baseline = checkout(os.environ.get("BENCH_BASELINE_REF", BASELINE_REF))
            # The old design's own bench used batches of 2000 messages (one per observation).
            env = {"PYTHONPATH": str(baseline), "SINK_BATCH_SIZE": "2000"}
            designs.append(Design("per-record", produce_singles, count_observed, env))
        for design in designs:
            print(f"{design.name}: {', '.join(f'{len(d):,}' for d in days)} observations")
            await run_design(design, days)
    finally:
        if baseline is not None:
            remove_checkout(baseline)
    print(table(designs))
    return {d.name: {k: round(v, 1) for k, v in d.figures.items()} for d in designs}
