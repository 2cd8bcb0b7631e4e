"""Replay real daily price snapshots through the real pipeline (fake store serving them).

Used by the real-data tests (tests/integration/test_replay.py: every app in the slow tier, a
sample in the everyday one; tests/unit/test_real_data.py: the pure path) and the benchmark
(``python -m bench replay``). The expected changes are computed here straight from the CSV files,
without the project's pricing code, so the comparison is independent.
"""

from __future__ import annotations

import csv
import gzip
import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.support.fakes import FakeSteam
from tests.support.infra import wait_for
from tests.support.processes import Pipeline
from tests.support.shared import shared_data_dir  # noqa: F401 (the benchmarks take it from here)

SNAPSHOTS = ("prices-2025-08-17.csv.gz", "prices-2025-08-18.csv.gz")

# (status, initial, final, discount) as Steam would serve it for the us region.
Price = tuple[str, int | None, int | None, int | None]


def read_snapshot(path: Path) -> dict[int, Price]:
    """One snapshot: price = final US cents (empty: no data, 0: free -> no price)."""
    out: dict[int, Price] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if not row["appid"]:
                continue
            app_id = int(row["appid"])
            if not row["price"] or int(row["price"]) == 0:
                out[app_id] = ("no_price", None, None, None)
                continue
            final = int(row["price"])
            discount = int(row["discount"] or 0)
            initial = round(final / (1 - discount / 100)) if 0 < discount < 100 else final
            out[app_id] = ("priced", initial, final, discount)
    return out


def _comparable(p: Price) -> tuple[object, ...]:
    status, initial, final, discount = p
    real_discount = (
        discount
        if discount and initial is not None and final is not None and final < initial
        else 0
    )
    return (status, initial, final, real_discount)


def expected_changes(
    before: dict[int, Price], after: dict[int, Price]
) -> dict[int, tuple[Price, Price]]:
    """Apps present on both days whose price (or priced/unpriced status) differs."""
    return {
        a: (before[a], p)
        for a, p in after.items()
        if a in before and _comparable(before[a]) != _comparable(p)
    }


# Settings of a replay's workers: two real days are replayed in minutes, not two days, so a
# second seed of an app follows its first within seconds (no dedupe window), nothing paces the
# fake store, and only price_current and price_changes are under test (no Discord).
REPLAY_WORKER_ENV = {
    "STEAM_COUNTRIES": "us",
    "SEED_DEDUPE_SECONDS": "0",
    "STEAM_MAX_REQUESTS_PER_MINUTE": "1000000",
    "RECRAWL_INTERVAL_SECONDS": "86400",
    "SINK_BATCH_SIZE": "2000",
    "ENABLE_DISCORD": "false",
}


def sample_apps(
    days: Sequence[Mapping[int, Price]], unchanged: int, one_day_only: int = 100, seed: int = 17
) -> set[int]:
    """Every app whose price changed between the two days, plus ``unchanged`` apps that did not
    and ``one_day_only`` apps of each day missing from the other (a fixed, seeded choice)."""
    first, second = days
    changed = set(expected_changes(first, second))
    rng = random.Random(seed)
    both = sorted((first.keys() & second.keys()) - changed)
    only_first, only_second = (
        sorted(first.keys() - second.keys()),
        sorted(second.keys() - first.keys()),
    )
    return (
        changed
        | set(rng.sample(both, min(unchanged, len(both))))
        | set(rng.sample(only_first, min(one_day_only, len(only_first))))
        | set(rng.sample(only_second, min(one_day_only, len(only_second))))
    )


def replay_problems(
    days: Sequence[Mapping[int, Price]],
    result: ReplayResult,
    current: Mapping[int, tuple[object, ...]],
    apps: Collection[int] | None = None,
) -> str:
    """What the replay got wrong ("" if nothing): every change of the apps replayed, once, with
    its old and new price; and each app's price_current row, its price on the last day it was
    in a snapshot (``current`` maps app id -> (status, initial, final, discount))."""
    first, second = days
    expected = {
        a: c for a, c in expected_changes(first, second).items() if apps is None or a in apps
    }
    problems: list[str] = []
    got = {row[0]: row for row in result.changes}
    if len(got) != len(result.changes):
        problems.append(f"{len(result.changes) - len(got)} duplicated changes")
    if set(got) != set(expected):
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        problems.append(f"changes missing for {missing[:20]}, unexpected for {extra[:20]}")
    for app_id, (old, new) in expected.items():
        row = got.get(app_id)
        if row is not None and (row[1], row[3:6], row[6:9]) != ("us", old[1:], new[1:]):
            problems.append(f"app {app_id}: change {row[1:]} instead of {old} -> {new}")
    wanted = {**first, **second}
    if apps is not None:
        wanted = {a: p for a, p in wanted.items() if a in apps}
    if set(current) != set(wanted):
        missing, extra = sorted(set(wanted) - set(current)), sorted(set(current) - set(wanted))
        problems.append(f"price_current missing {missing[:20]}, unexpected {extra[:20]}")
    wrong = [a for a, p in wanted.items() if a in current and current[a] != p]
    if wrong:
        problems.append(
            f"{len(wrong)} wrong price_current rows, e.g. "
            + ", ".join(f"{a}: {current[a]} instead of {wanted[a]}" for a in wrong[:5])
        )
    return "; ".join(problems[:12])


async def current_prices(pipeline: Pipeline) -> dict[int, tuple[object, ...]]:
    """price_current of the us region: app id -> (status, initial, final, discount)."""
    rows = await pipeline.query(
        "SELECT app_id, status, initial_price, final_price, discount_percent"
        " FROM price_current WHERE cc = 'us'"
    )
    return {int(r[0]): tuple(r[1:]) for r in rows}


@dataclass
class Pass:
    snapshot: str
    apps: int
    seconds: float
    observations_per_second: float


@dataclass
class ReplayResult:
    passes: list[Pass] = field(default_factory=list)
    changes: list[tuple[object, ...]] = field(default_factory=list)


async def _wait_priced(
    pipeline: Pipeline,
    want: int,
    since: datetime,
    say: Callable[[str], None],
    timeout: float,
    name: str,
) -> None:
    """Wait until ``want`` apps were checked at or after ``since``; report progress.

    An unchanged price is not written to price_current again: each batch the sink receives
    records its check in price_checks instead (``apps`` of them; an app is checked once a pass).
    """
    started = time.monotonic()
    last_report = started

    async def repriced() -> bool:
        nonlocal last_report
        rows = await pipeline.query(
            "SELECT COALESCE(SUM(apps), 0) FROM price_checks WHERE checked_at >= %s", (since,)
        )
        n = int(rows[0][0]) if rows else 0
        if time.monotonic() - last_report > 15:
            last_report = time.monotonic()
            say(f"  {n:,}/{want:,} priced after {time.monotonic() - started:.0f} s")
        return n >= want

    await wait_for(f"{name}: every app priced", repriced, timeout=timeout, every=1.0)


async def replay(
    pipeline: Pipeline,
    steam: FakeSteam,
    paths: list[Path],
    say: Callable[[str], None] = print,
    timeout_per_pass: float = 1800.0,
    apps: Collection[int] | None = None,
) -> ReplayResult:
    """Seed every app of each snapshot in turn (only ``apps``, when given) and wait until all of
    them are priced again; the fake store serves the whole snapshot either way."""
    result = ReplayResult()
    for path in paths:
        ids = sorted(a for a in read_snapshot(path) if apps is None or a in apps)
        steam.load_snapshot(path, cc="us")
        seed_file = pipeline.tmp / f"{path.stem}.ids"
        seed_file.write_text("\n".join(map(str, ids)) + "\n")
        started_at = datetime.now(UTC).replace(tzinfo=None)
        started = time.monotonic()
        await pipeline.cli("seed", "--file", str(seed_file))
        say(f"{path.name}: seeded {len(ids):,} apps")
        await _wait_priced(pipeline, len(ids), started_at, say, timeout_per_pass, path.name)
        seconds = time.monotonic() - started
        result.passes.append(
            Pass(path.name, len(ids), round(seconds, 1), round(len(ids) / seconds))
        )
        say(
            f"{path.name}: {len(ids):,} apps priced in {seconds:.1f} s ({len(ids) / seconds:,.0f}/s)"
        )

    # The change sink trails the price_current sink a little: wait until the count settles.
    stable = {"count": -1, "since": time.monotonic()}

    async def settled() -> bool:
        n = int((await pipeline.query("SELECT COUNT(*) FROM price_changes"))[0][0])
        if n != stable["count"]:
            stable.update(count=n, since=time.monotonic())
        return time.monotonic() - stable["since"] > 5

    await wait_for("price_changes to settle", settled, timeout=120, every=0.5)
    result.changes = await pipeline.query(
        "SELECT app_id, cc, kind, old_initial, old_final, old_discount, new_initial, new_final,"
        " new_discount FROM price_changes ORDER BY app_id"
    )
    return result
