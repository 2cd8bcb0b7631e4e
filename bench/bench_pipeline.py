"""The full 2025-08-17 snapshot through normalize -> detect -> MySQL on one worker (issue 4).

Raw ``appdetails`` entries (as the crawler would publish them) are produced straight onto
``prices-raw``; the clock runs until every app has its row in ``price_current``. Then the worker
is restarted with its tables populated and the time until it processes a new message is taken.
Targets: >= 5,000 observations/s, peak RSS <= 500 MB, restart to processing <= 30 s.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from tests.support.infra import KAFKA, wait_for
from tests.support.processes import Pipeline
from tests.support.replay import SNAPSHOTS, read_snapshot, shared_data_dir


def entry(price: tuple[str, int | None, int | None, int | None]) -> str:
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


async def produce(pipeline: Pipeline, prices: dict[int, tuple], fetched_at: datetime) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        topic = pipeline.topic("prices-raw")
        stamp = fetched_at.isoformat()
        for app_id, price in prices.items():
            value = json.dumps(
                {"app_id": app_id, "cc": "us", "fetched_at": stamp, "entry": entry(price)},
                separators=(",", ":"),
            ).encode()
            await producer.send(topic, value, key=str(app_id).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def main() -> dict[str, object]:
    data = shared_data_dir()
    if data is None:
        print("skipped: set STEAMPRICE_SHARED_DATA to the folder with " + ", ".join(SNAPSHOTS))
        return {"skipped": True}
    prices = read_snapshot(data / SNAPSHOTS[0])
    limit = int(os.environ.get("BENCH_APPS", "0"))
    if limit:
        prices = dict(list(prices.items())[:limit])
    n = len(prices)
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    pipeline = Pipeline(tmp, ENABLE_DISCORD="false", SINK_BATCH_SIZE="2000")
    worker = pipeline.worker()
    try:
        await worker.start()
        assert worker.proc is not None
        cpu_before = cpu_seconds(worker.proc.pid)
        started = time.monotonic()
        await produce(pipeline, prices, datetime.now(UTC))
        produced = time.monotonic() - started
        print(f"produced {n:,} raw entries in {produced:.1f} s")
        last = [time.monotonic()]

        async def all_rows() -> bool:
            got = int((await pipeline.query("SELECT COUNT(*) FROM price_current"))[0][0])
            if time.monotonic() - last[0] > 10:
                last[0] = time.monotonic()
                print(f"  {got:,}/{n:,} rows after {time.monotonic() - started:.0f} s", flush=True)
            return got >= n

        await wait_for("every observation in price_current", all_rows, timeout=3600, every=0.5)
        seconds = time.monotonic() - started
        rss = peak_rss_mb(worker.proc.pid)
        cpu = cpu_seconds(worker.proc.pid) - cpu_before
        rate = n / seconds
        print(
            f"{n:,} observations end to end in {seconds:.1f} s: {rate:,.0f}/s "
            f"(target >= 5,000/s: {rate / 5000:.2f}x); worker CPU {cpu:.1f} s = "
            f"{cpu / n * 1e6:,.0f} us per observation (CPU-bound ceiling {n / cpu:,.0f}/s); "
            f"worker peak RSS {rss:.0f} MB (target <= 500 MB)"
        )

        await worker.stop()
        restart = time.monotonic()
        await worker.start(wait=False)
        probe_app = max(prices) + 1
        await produce(pipeline, {probe_app: ("priced", 999, 999, 0)}, datetime.now(UTC))

        async def probe_row() -> bool:
            rows = await pipeline.query(
                "SELECT 1 FROM price_current WHERE app_id = %s", (probe_app,)
            )
            return bool(rows)

        await wait_for("the worker to process again after a restart", probe_row, timeout=600)
        restart_seconds = time.monotonic() - restart
        print(f"restart (tables populated) to processing: {restart_seconds:.1f} s (target <= 30 s)")
        return {
            "observations": n,
            "seconds": round(seconds, 1),
            "per_second": round(rate),
            "cpu_us_per_observation": round(cpu / n * 1e6),
            "peak_rss_mb": round(rss),
            "restart_seconds": round(restart_seconds, 1),
        }
    finally:
        print(f"worker log: {worker.log_path}")
        await pipeline.close()
