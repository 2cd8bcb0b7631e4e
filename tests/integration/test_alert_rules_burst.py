"""A sale-sized burst through alert rules on the real stack: every channel within its limits.

10,000 changes arrive on ``price-changes`` at once (the topic other programs write too). Rules
"all" (every change) and "deep" (>= 60 % off) share channel A; rule "watch" (20 apps) posts into
channel B. The channel limit is the subject here, so the fake's windows and the worker's
channel window are 10x shorter (30 messages per 6 s, buckets of 5 per 0.2 s), and the digest
switch follows (DISCORD_DIGEST_AFTER_SECONDS 30 instead of 300).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from steamprice.models import PriceChange
from steamprice.notify.embeds import changes_shown
from tests.support.fakes import FakeDiscord
from tests.support.infra import wait_for
from tests.support.processes import Pipeline
from tests.support.records import price_change

CHANGES = 10_000
FIRST_APP = 200_000
WINDOW = 6.0
ALL, DEEP, WATCH = "801", "802", "803"
CHANNEL_A, CHANNEL_B = "9001", "9002"
WATCHLIST = list(range(FIRST_APP, FIRST_APP + 2000, 100))  # 20 apps
T = datetime(2025, 11, 27, 18, 0, tzinfo=UTC)


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(bucket=(5, 0.2), channel_limit=(30, WINDOW)) as fake:
        yield fake


def burst() -> list[PriceChange]:
    out = []
    for n, app in enumerate(range(FIRST_APP, FIRST_APP + CHANGES)):
        discount = (10, 25, 50, 60, 75, 90)[n % 6]
        out.append(
            price_change(
                app,
                event_id=f"burst-{app}",
                new_final=1999 * (100 - discount) // 100,
                new_discount=discount,
                observed_at=T,
                previous_observed_at=T,
            )
        )
    return out


async def test_a_sale_burst_keeps_every_channel_within_its_limit_and_digests_where_it_must(
    pipeline: Pipeline, discord: FakeDiscord
) -> None:
    pipeline.env["DISCORD_WEBHOOK_URL"] = ""
    discord.set_channel(ALL, CHANNEL_A)
    discord.set_channel(DEEP, CHANNEL_A)
    discord.set_channel(WATCH, CHANNEL_B)
    hook = {h: discord.webhook_url(h, f"tok-burst-{h}") for h in (ALL, DEEP, WATCH)}
    await pipeline.cli("alerts", "add", "all", "--webhook", hook[ALL])
    await pipeline.cli("alerts", "add", "deep", "--webhook", hook[DEEP], "--min-discount", "60")
    watch = ",".join(map(str, WATCHLIST))
    await pipeline.cli("alerts", "add", "watch", "--webhook", hook[WATCH], "--apps", watch)
    worker = pipeline.worker(
        DISCORD_CHANNEL_WINDOW_SECONDS=str(WINDOW), DISCORD_DIGEST_AFTER_SECONDS="30"
    )
    await worker.start()

    events = burst()
    owed = {
        ALL: Counter(e.app_id for e in events),
        DEEP: Counter(e.app_id for e in events if e.new_discount >= 60),
        WATCH: Counter(e.app_id for e in events if e.app_id in WATCHLIST),
    }
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka, linger_ms=20)
    await producer.start()
    try:
        for e in events:
            await producer.send(
                pipeline.topic("price-changes"), e.dumps(), key=str(e.app_id).encode()
            )
        await producer.flush()
    finally:
        await producer.stop()

    def shown(webhook: str) -> Counter[int]:
        return Counter(
            a for m in discord.messages_for(webhook) for a, _ in changes_shown(m.visible_embeds)
        )

    async def delivered() -> bool:
        return all(sum(shown(h).values()) >= sum(c.values()) for h, c in owed.items())

    await wait_for("every rule's changes delivered", delivered, timeout=420, every=1.0)
    assert {h: shown(h) for h in owed} == owed  # each change once per matching rule

    # Within the channel limit: never more than 30 messages in any 6 s of one channel, no
    # channel 429, nothing sent inside a retry window.
    for channel in (CHANNEL_A, CHANNEL_B):
        times = [m.time for m in discord.messages if m.channel_id == channel]
        busiest = max(sum(1 for u in times if t <= u < t + WINDOW) for t in times)
        assert busiest <= 30, (channel, busiest)
    assert not [r for r in discord.requests if r.reason == "shared"]
    assert discord.requests_in_retry_window == 0

    # Channel A was far behind at one embed per app (1,500 messages for its 15,000 changes at
    # 30 a minute): it switched to digests, saying so in each, until what was left fitted in
    # DISCORD_DIGEST_AFTER_SECONDS again, then went back to one embed per app; channel B, with
    # 20 changes, kept one embed per app.
    a = [m for m in discord.messages if m.channel_id == CHANNEL_A]
    digests = [m for m in a if "url" not in m.embeds[0]]
    assert len(digests) >= 100 and len(a) <= 500, (len(digests), len(a))
    assert all("This channel is behind" in m.payload.get("content", "") for m in digests)
    b = [m for m in discord.messages if m.channel_id == CHANNEL_B]
    assert b and all("url" in m.embeds[0] for m in b)
    assert "is behind" in worker.log()
    ledger = await pipeline.query(
        "SELECT rule_name, status, COUNT(*) FROM discord_deliveries GROUP BY rule_name, status"
    )
    assert sorted(ledger) == sorted(
        [("all", "sent", CHANGES), ("deep", "sent", len(owed[DEEP])), ("watch", "sent", 20)]
    )
