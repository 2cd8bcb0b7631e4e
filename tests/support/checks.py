"""Assertions on a pipeline's output: rows, notifications, metrics, secrets, commits, quiet."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence, Set
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp

from tests.support.catalog import Catalog, change_rows, current_rows
from tests.support.infra import committed_offsets, topic_ends, wait_for
from tests.support.processes import Pipeline, Worker

T = TypeVar("T")


_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")


_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
# Every page a worker serves: ours, and Faust's own (those switched off answer 404).


# Every page a worker serves: ours, and Faust's own (those switched off answer 404).
WEB_PAGES = (
    "/", "/health", "/metrics", "/stats/", "/assignment/", "/router/", "/graph/", "/table/",
    "/performance/", "/prices", "/changes", "/api/prices", "/api/changes",
)  # fmt: skip


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample of a Prometheus text page (its labels exactly ``labels``), None if absent."""
    for line in text.splitlines():
        m = _SAMPLE_RE.match(line)
        if m and m.group(1) == name and dict(_LABEL_RE.findall(m.group(2) or "")) == labels:
            return float(m.group(3))
    return None


def metric_or_zero(text: str, name: str, **labels: str) -> float:
    """Like :func:`metric`, 0 when the sample is absent (a counter not yet incremented)."""
    value = metric(text, name, **labels)
    return 0.0 if value is None else value


def appdetails_requests(steam: Any) -> list[Any]:
    """The fake store's recorded ``appdetails`` requests, oldest first."""
    return [r for r in steam.requests if r.path == "/api/appdetails"]


def mismatches(expected: Mapping[Any, Any], actual: Mapping[Any, Any], limit: int = 8) -> str:
    """A short account of how two mappings differ ('' when equal), for assertion messages."""
    missing = [k for k in expected if k not in actual]
    extra = [k for k in actual if k not in expected]
    wrong = [k for k in expected if k in actual and actual[k] != expected[k]]
    if not (missing or extra or wrong):
        return ""
    return (
        f"{len(missing)} missing {missing[:limit]}; {len(extra)} unexpected {extra[:limit]}; "
        f"{len(wrong)} wrong {[(k, expected[k], actual[k]) for k in wrong[:limit]]}"
    )


def discord_posts(discord: Any) -> Counter[tuple[int, str]]:
    """How often each (app, region) was shown in a message the fake Discord accepted."""
    from steamprice.notify.embeds import changes_shown

    return Counter(x for m in discord.messages for x in changes_shown(m.visible_embeds))


async def ledger(pipeline: Pipeline) -> dict[tuple[int, str], list[str]]:
    """Statuses of the Discord delivery ledger's rows per (app, region)."""
    rows = await pipeline.query("SELECT app_id, cc, status FROM discord_deliveries")
    out: dict[tuple[int, str], list[str]] = {}
    for app, cc, status in rows:
        out.setdefault((int(app), str(cc)), []).append(str(status))
    return out


def notification_problems(
    owed: Counter[tuple[int, str]],
    posted: Counter[tuple[int, str]],
    statuses: Mapping[tuple[int, str], list[str]],
) -> str:
    """'' when every owed notification went out exactly once ('' too for an 'uncertain' one,
    whose post a kill may have cut before or after Discord took it: at most once there)."""
    problems = []
    for key in sorted(set(owed) | set(posted)):
        want, got = owed.get(key, 0), posted.get(key, 0)
        uncertain = statuses.get(key, []).count("uncertain")
        if got == want or (uncertain and want - uncertain <= got <= want):
            continue
        problems.append(f"{key}: owed {want}, posted {got}, ledger {statuses.get(key)}")
    return "; ".join(problems[:10]) + (
        f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
    )


async def web_texts(worker: Worker) -> dict[str, str]:
    """Every page the worker serves (see WEB_PAGES), by path."""
    out: dict[str, str] = {}
    async with aiohttp.ClientSession() as s:
        for path in WEB_PAGES:
            async with s.get(f"{worker.url}{path}") as r:
                out[path] = await r.text()
    return out


def leaks(texts: Mapping[str, str], secrets: Iterable[str]) -> list[str]:
    """Where any secret (or its URL-encoded form) shows up; names the place, never the secret."""
    from urllib.parse import quote

    found = []
    for n, secret in enumerate(s for s in secrets if s):
        for form in {secret, quote(secret, safe="")}:
            found += [f"secret #{n} in {where}" for where, text in texts.items() if form in text]
    return found


async def pipeline_status_while_stopping(
    worker: Worker, sig: int = signal.SIGTERM
) -> tuple[list[float], int, int]:
    """Send ``sig`` and read ``steam_pipeline_status`` until the web server goes away.

    The gauge must drop to 0 in the worker's own shutdown, before its web server stops: polled
    every few milliseconds, the last value read is the last one the worker showed. Returns the
    values read (changes only), how many reads saw 0, and the exit code.
    """
    assert worker.proc is not None
    worker.proc.send_signal(sig)
    seen: list[float] = []
    zeros = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
        while worker.proc.returncode is None:
            try:
                async with s.get(f"{worker.url}/metrics") as r:
                    value = metric(await r.text(), "steam_pipeline_status", pipeline="worker")
            except (aiohttp.ClientError, OSError, TimeoutError):
                value = None
            zeros += value == 0.0
            if value is not None and (not seen or seen[-1] != value):
                seen.append(value)
            try:
                await asyncio.wait_for(asyncio.shield(worker.proc.wait()), 0.005)
            except TimeoutError:
                pass
    return seen, zeros, await worker.proc.wait()


def apps_requested(steam: Any, since: int = 0) -> Counter[int]:
    """How often each app was asked for in ``appdetails`` requests from ``since`` on."""
    asked: Counter[int] = Counter()
    for r in steam.requests[since:]:
        if r.path.startswith("/api/appdetails") and r.status == 200:
            asked.update(int(a) for a in r.query.get("appids", "").split(",") if a)
    return asked


def crawl_commit_problems(
    before: Mapping[int, tuple[int, int]],
    after: Mapping[int, tuple[int, int]],
    records: Mapping[int, Sequence[tuple[int, Any]]],
    answered: Set[int],
    last_request: Set[int],
) -> list[str]:
    """What is wrong with the crawl-requests commits of a round stopped mid-way.

    ``before``/``after``: committed offsets and ends per partition when the round began and
    after the stop; ``records``: every record's offset and value; ``answered``: the apps Steam
    answered in the round; ``last_request``: those of its last request (in flight at the stop,
    perhaps cut short after Steam's answer). A committed record must hold only answered apps
    (else it was acked unprocessed: lost); the first record not committed must hold an app not
    answered or of the last request (else commits lag behind the work done).
    """
    problems = []
    for partition, (done, end) in sorted(after.items()):
        start = before.get(partition, (0, 0))[1]
        for offset, value in records.get(partition, ()):
            if offset < start:
                continue
            apps = set(value["app_ids"]) if "app_ids" in value else {value["app_id"]}
            if offset < done and not apps <= answered:
                missing = sorted(apps - answered)[:5]
                problems.append(f"p{partition}@{offset} committed, apps {missing} not answered")
            if offset == done < end and apps <= answered and not apps & last_request:
                problems.append(f"p{partition}@{offset} answered but not committed")
    return problems


def store_requests(steam: Any, since: int = 0) -> int:
    """``appdetails`` requests the fake store answered from ``since`` on, whatever the answer."""
    return sum(r.path.startswith("/api/appdetails") for r in steam.requests[since:])


async def sweep_problems(pipeline: Pipeline, catalog: Catalog, discord: Any = None) -> str:
    """What keeps the pipeline's output from the catalog's ground truth ('' when none).

    ``price_current`` must equal the truth, ``price_changes`` hold each expected change once
    and nothing else, and (with ``discord``) every change be notified once and none wait.
    """
    problems = []
    current = await current_rows(pipeline)
    if wrong := mismatches(catalog.truth, current):
        problems.append(f"price_current: {wrong}")
    changes = await change_rows(pipeline)
    expected = Counter(catalog.changes)
    if changes != expected:
        twice = [c for c, n in changes.items() if n > 1]
        problems.append(f"price_changes: {mismatches(expected, changes)}; duplicated {twice[:5]}")
    if discord is not None:
        statuses = await ledger(pipeline)
        queued = sum(s in ("pending", "sending") for ss in statuses.values() for s in ss)
        if queued:
            problems.append(f"Discord: {queued} changes still queued")
        elif wrong := notification_problems(
            catalog.changed_regions(), discord_posts(discord), statuses
        ):
            problems.append(f"Discord: {wrong}")
    return " | ".join(problems)


def partition_of(app_id: int, partitions: int) -> int:
    """The partition of an app's messages: keys are the app id as JSON text, spread by the
    producer's default partitioner (murmur2), on every topic of the pipeline alike."""
    from aiokafka.partitioner import murmur2

    return (murmur2(str(app_id).encode()) & 0x7FFFFFFF) % partitions


async def seconds_to_progress(
    pipeline: Pipeline,
    restart: Callable[[], Awaitable[object]],
    apps: Collection[int] = (),
    timeout: float = 180.0,
) -> float:
    """Run ``restart``; the seconds from then to the first new row of ``price_current`` (a price
    observed after the restart), of one of ``apps`` if given.

    What an operator watching MySQL sees as "working again" after a crash or a stop.
    """
    started, since = time.monotonic(), datetime.now(UTC).replace(tzinfo=None)
    await restart()
    where = " AND app_id IN (" + ",".join(str(int(a)) for a in apps) + ")" if apps else ""
    sql = f"SELECT COUNT(*) FROM price_current WHERE observed_at > %s{where}"

    async def new_row() -> bool:
        rows = await pipeline.query(sql, (since,))
        return bool(rows and rows[0][0])

    await wait_for("a new row in price_current", new_row, timeout=timeout, every=0.1)
    return time.monotonic() - started


async def wait_until_right(
    what: str, problems: Callable[[], Awaitable[str]], timeout: float
) -> float:
    """Poll ``problems`` until it reports none; the seconds it took. Fails with the last report."""
    started = time.monotonic()
    last = ""

    async def right() -> bool:
        nonlocal last
        last = await problems()
        return not last

    try:
        await wait_for(what, right, timeout=timeout, every=0.5)
    except AssertionError:
        raise AssertionError(
            f"timed out after {timeout:.0f} s waiting for {what}: {last}"
        ) from None
    return time.monotonic() - started


class Quiet:
    """A probe for :func:`wait_until_right`: '' once the pipeline has nothing left to do.

    That is: every live worker consumes and waits for no crawl answer, and no topic of the
    pipeline has grown for ``seconds``. Committed offsets are :func:`commit_problems`' subject.
    """

    def __init__(self, pipeline: Pipeline, workers: Sequence[Worker], seconds: float = 3.0) -> None:
        self.pipeline = pipeline
        self.workers = workers
        self.seconds = seconds
        self._ends: dict[str, int] | None = None
        self._since = 0.0

    async def __call__(self) -> str:
        for w in self.workers:
            if w.proc is None or w.proc.returncode is not None:
                continue
            health = await w.health()
            if not health or not health.get("consuming"):
                return f"{w.name} is not consuming: {health}"
            pending = metric(await w.metrics(), "steam_queue_size", queue="pending")
            if pending:
                return f"{w.name} waits for {pending:.0f} crawl answers"
        ends = await topic_ends(self.pipeline)
        now = time.monotonic()
        if ends != self._ends:
            self._ends, self._since = ends, now
            return "topics still growing"
        if now - self._since < self.seconds:
            return f"topics quiet for {now - self._since:.1f} s only"
        return ""


PIPELINE_TOPICS = (
    "app-ids",
    "schedule",
    "crawl-requests",
    "prices-raw",
    "prices-normalized",
    "price-changes",
)


async def stalled_commits(pipeline: Pipeline) -> dict[str, list[int]]:
    """Partitions whose committed offset is behind the end (call once the pipeline is quiet)."""
    stalled: dict[str, list[int]] = {}
    for short in PIPELINE_TOPICS:
        offsets = await committed_offsets(pipeline, short)
        behind = [p for p, (done, end) in sorted(offsets.items()) if done < end]
        if behind:
            stalled[short] = behind
    return stalled


async def commit_problems(pipeline: Pipeline) -> str:
    """'' once the group has committed every partition of the pipeline's topics to its end.

    Faust's own consumer could leave a partition's commits stuck behind a message it lost in a
    rebalance (faust-streaming#596); ``steamprice.kafka`` re-reads such messages, so after a
    quiet moment nothing may stay behind.
    """
    stalled = await stalled_commits(pipeline)
    return f"commits behind the end of {stalled}" if stalled else ""
