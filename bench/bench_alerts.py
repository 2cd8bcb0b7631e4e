"""Alert rules: routing 100,000 changes against 1,000 rules, and a sale burst over two channels.

Routing (pure, in-process): 1,000 rules -- 800 watchlists of 25 apps (some with regions, target
prices or a minimum discount), 150 region rules with a minimum discount, 50 catalog-wide rules
on kinds or historical lows -- and 100,000 changes over a 50,000-app catalog in four regions.
Reported: events/s through :class:`RuleIndex`, rule evaluations per event (a scan would make
1,000), matches per event, and the same 2,000 events through a plain scan for the speed-up and
a check that both find exactly the same rules.

Sale burst (the notifier on the local MariaDB, its rules on a real Kafka topic, FakeDiscord with
5 requests / 2 s per webhook and 30 messages / 60 s per channel, every window SCALE times
shorter, times reported scaled back): 10,000 changes of 10,000 apps at once; rule "all" (every
change) and rule "deep" (>= 50 % off) share channel A through two webhooks, rule "lows"
(historical lows) posts into channel B. Reported per channel: time until its backlog is
delivered, against the floor its limit allows for the messages it needed, and against the
floor one embed per app would have needed; 429s and requests inside a retry window.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from steamprice.database import Database, connect_kwargs
from steamprice.metrics import Metrics
from steamprice.models import PriceChange
from steamprice.notify.embeds import MAX_EMBEDS, changes_shown
from steamprice.notify.notifier import DiscordNotifier
from steamprice.notify.rulebook import RuleBook
from steamprice.notify.rules import AlertRule, RuleIndex, build_rule
from steamprice.pricing import KINDS
from steamprice.settings import Settings
from tests.support.database import drop_database
from tests.support.fakes.discord import FakeDiscord
from tests.support.infra import KAFKA, delete_topic

RULES = 1_000
EVENTS = 100_000
CATALOG = 50_000
REGIONS = {"us": "USD", "gb": "GBP", "de": "EUR", "jp": "JPY"}
SCAN_SAMPLE = 2_000
HOOK = "https://discord.com/api/webhooks/{}/bench-token-{}"
T = datetime(2025, 11, 27, 18, 0, tzinfo=UTC)

BURST = 10_000
SCALE = 10.0
BUCKET = (5, 2.0)
CHANNEL = (30, 60.0)


def change(app: int, cc: str, rng: random.Random, n: int) -> PriceChange:
    initial = rng.choice((499, 999, 1999, 2999, 5999)) * (100 if cc == "jp" else 1)
    discount = rng.choice((0, 10, 25, 33, 50, 66, 75, 90))
    final = initial * (100 - discount) // 100
    return PriceChange(
        event_id=f"bench-alerts-{n:08d}",
        app_id=app,
        cc=cc,
        kind=rng.choice(KINDS[:5]),
        old_status="priced",
        new_status="priced",
        old_currency=REGIONS[cc],
        new_currency=REGIONS[cc],
        old_initial=initial,
        old_final=initial,
        old_discount=0,
        new_initial=initial,
        new_final=final,
        new_discount=discount,
        observed_at=T,
        previous_observed_at=T,
        new_historical_low=rng.random() < 0.05,
    )


def make_rules(rng: random.Random) -> list[AlertRule]:
    rules: list[AlertRule] = []
    for i in range(800):
        apps = ",".join(str(rng.randrange(1, CATALOG)) for _ in range(25))
        kw: dict[str, Any] = {"apps": apps}
        if i % 4 == 1:
            kw["regions"] = rng.choice(("us", "gb,de", "jp"))
        if i % 4 == 2:
            kw["max_price"] = [f"us={rng.choice((4.99, 9.99, 19.99))}", "jp=1500"]
        if i % 4 == 3:
            kw["min_discount"] = rng.choice((25, 50, 75))
        rules.append(build_rule(f"watch-{i}", webhook=HOOK.format(i, i), **kw))
    for i in range(150):
        rules.append(
            build_rule(
                f"region-{i}",
                webhook=HOOK.format(1000 + i, i),
                regions=rng.choice(tuple(REGIONS)),
                min_discount=rng.choice((30, 50, 75, 90)),
            )
        )
    for i in range(50):
        kw = {"historical_low": True} if i % 2 else {"kinds": "discount_started"}
        rules.append(build_rule(f"all-{i}", webhook=HOOK.format(2000 + i, i), **kw))
    return rules


def routing() -> dict[str, Any]:
    rng = random.Random(14)
    rules = make_rules(rng)
    assert len(rules) == RULES
    events = [
        change(rng.randrange(1, CATALOG), rng.choice(tuple(REGIONS)), rng, n) for n in range(EVENTS)
    ]
    started = time.perf_counter()
    index = RuleIndex(rules)
    build = time.perf_counter() - started
    evaluated = matched = 0
    started = time.perf_counter()
    for e in events:
        routed = index.route(e)
        evaluated += routed.evaluated
        matched += len(routed.matched)
    elapsed = time.perf_counter() - started

    sample = events[:SCAN_SAMPLE]
    started = time.perf_counter()
    scanned = [[r.name for r in rules if r.matches(e)] for e in sample]
    scan = time.perf_counter() - started
    same = all(
        sorted(r.name for r in index.route(e).matched) == sorted(names)
        for e, names in zip(sample, scanned, strict=True)
    )
    result = {
        "rules": RULES,
        "events": EVENTS,
        "index_build_seconds": round(build, 3),
        "events_per_second": round(EVENTS / elapsed),
        "evaluations_per_event": round(evaluated / EVENTS, 2),
        "scan_evaluations_per_event": RULES,
        "matches_per_event": round(matched / EVENTS, 3),
        "scan_events_per_second": round(SCAN_SAMPLE / scan),
        "speedup_over_scan": round((scan / SCAN_SAMPLE) / (elapsed / EVENTS), 1),
        "same_matches_as_scan": same,
    }
    print(
        f"routing: {EVENTS:,} events x {RULES:,} rules: {result['events_per_second']:,} events/s,"
        f" {result['evaluations_per_event']} rule evaluations per event (a scan: {RULES}),"
        f" {result['matches_per_event']} matches per event; scan {result['scan_events_per_second']:,}"
        f" events/s ({result['speedup_over_scan']}x slower); same matches: {same}",
        flush=True,
    )
    return result


# ---------------------------------------------------------------------- sale burst


def burst_changes() -> list[PriceChange]:
    rng = random.Random(2025)
    out = []
    for n, app in enumerate(range(100_000, 100_000 + BURST)):
        out.append(change(app, "us", rng, n))
    return out


async def publish_rules(topic: str, rules: list[AlertRule]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
    await producer.start()
    try:
        for r in rules:
            await producer.send_and_wait(topic, r.to_json(), key=r.name.encode())
    finally:
        await producer.stop()


async def sale_burst() -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    db, topic = f"bench_alerts_{tag}", f"bench-alerts-{tag}.alert-rules"
    fake = FakeDiscord(
        bucket=(BUCKET[0], BUCKET[1] / SCALE),
        channel_limit=(CHANNEL[0], CHANNEL[1] / SCALE),
        global_limit=(50, 1.0 / SCALE),
    )
    await fake.start()
    fake.set_channel("901", "5001")
    fake.set_channel("902", "5001")
    fake.set_channel("903", "5002")
    rules = [
        build_rule("all", webhook=fake.webhook_url("901", "tok-all-1234")),
        build_rule("deep", webhook=fake.webhook_url("902", "tok-deep-1234"), min_discount=50),
        build_rule("lows", webhook=fake.webhook_url("903", "tok-lows-1234"), historical_low=True),
    ]
    await publish_rules(topic, rules)
    settings = Settings(
        mysql_db=db,
        discord_channel_messages=CHANNEL[0],
        discord_channel_window_seconds=CHANNEL[1] / SCALE,
        discord_digest_after_seconds=300 / SCALE,
    )
    metrics = Metrics.create()
    database = Database(settings, metrics)
    book = RuleBook(f"kafka://{KAFKA}", topic, metrics)
    notifier = DiscordNotifier(settings, metrics, database, book)
    await database.start()
    await database.ready.wait()
    await book.start()
    await notifier.start()
    events = burst_changes()
    owed = {r.name: {(e.app_id, e.cc) for e in events if r.matches(e)} for r in rules}
    total = sum(len(v) for v in owed.values())
    try:
        started = time.monotonic()
        await notifier.enqueue(events)
        queued = time.monotonic() - started
        deadline = started + 600
        while (
            sum(
                metrics.registry.get_sample_value(
                    "steam_discord_rule_changes_total", {"rule": r.name, "outcome": "sent"}
                )
                or 0
                for r in rules
            )
            < total
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("sale burst: not all changes delivered within 600 s")
            await asyncio.sleep(0.05)
        by_rule = {
            r.name: Counter(
                x for m in fake.messages_for(w) for x in changes_shown(m.visible_embeds)
            )
            for r, w in zip(rules, ("901", "902", "903"), strict=True)
        }
        once = all(
            set(by_rule[name]) == owed[name] and set(by_rule[name].values()) <= {1} for name in owed
        )
        channels: dict[str, Any] = {}
        for channel in ("5001", "5002"):
            msgs = [m for m in fake.messages if m.channel_id == channel]
            names = [
                r.name
                for r, w in zip(rules, ("901", "902", "903"), strict=True)
                if fake.channel_of(w) == channel
            ]
            apps = sum(len(owed[n]) for n in names)
            done = (msgs[-1].time - started) * SCALE if msgs else 0.0
            floor = max(len(msgs) - CHANNEL[0], 0) / CHANNEL[0] * CHANNEL[1]
            embeds = sum(math.ceil(len(owed[n]) / MAX_EMBEDS) for n in names)
            embed_floor = max(embeds - CHANNEL[0], 0) / CHANNEL[0] * CHANNEL[1]
            per_window = (
                max(
                    sum(1 for m in msgs if t.time <= m.time < t.time + CHANNEL[1] / SCALE)
                    for t in msgs
                )
                if msgs
                else 0
            )
            channels[channel] = {
                "rules": names,
                "changes": apps,
                "messages": len(msgs),
                "digests": sum(1 for m in msgs if "url" not in m.embeds[0]),
                "seconds": round(done, 1),
                "floor_seconds": round(floor, 1),
                "ratio_to_floor": round(done / floor, 2) if floor else None,
                "one_embed_per_app_floor_seconds": round(embed_floor, 1),
                "most_messages_in_one_window": per_window,
            }
        result = {
            "changes": BURST,
            "owed": {n: len(v) for n, v in owed.items()},
            "queue_seconds": round(queued, 2),
            "delivered_once_per_rule": once,
            "channels": channels,
            "http_429": fake.count_429,
            "requests_in_retry_window": fake.requests_in_retry_window,
        }
        for channel, c in channels.items():
            print(
                f"sale burst, channel {channel} ({'+'.join(c['rules'])}): {c['changes']:,} changes"
                f" in {c['seconds']} s (scaled back x{SCALE:g}) with {c['messages']} messages"
                f" ({c['digests']} digests); floor for those messages {c['floor_seconds']} s"
                f" ({c['ratio_to_floor']}x); one embed per app would need"
                f" >= {c['one_embed_per_app_floor_seconds']} s; at most"
                f" {c['most_messages_in_one_window']} messages in one channel window",
                flush=True,
            )
        print(
            f"sale burst: queued in {result['queue_seconds']} s; each change once per rule: {once};"
            f" {fake.count_429} x 429, {fake.requests_in_retry_window} inside a retry window",
            flush=True,
        )
        return result
    finally:
        await notifier.stop()
        await book.stop()
        await database.stop()
        await fake.stop()
        await delete_topic(topic)
        await drop_database(db, connect_kwargs(settings, with_db=False))


async def main() -> dict[str, Any]:
    return {"routing": routing(), "sale_burst": await sale_burst()}
