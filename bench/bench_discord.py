"""Discord: 1,000 changes at once through the notifier against a webhook enforcing the limits.

The notifier service (its sender, ledger and pacing, on the local MariaDB in a throwaway
database) posts 1,000 changes of 1,000 distinct apps, all queued at once as the sink agent
queues them, to ``FakeDiscord`` enforcing 5 requests / 2 s per webhook and 30 messages / 60 s
per channel. Every window (the fake's and the notifier's channel window) is SCALE times
shorter, the ratios kept, so the run takes ~20 s instead of ~200 s; times are reported scaled
back. Two runs: one embed per app (digests off: the floor is set by the limits and 10 embeds per
message, 100 messages at 30 / min = 200 s) and the default, where the backlog goes out as
digests of ~50 apps per message and beats that floor.
Targets: all delivered once, 0 requests inside a retry window, within 1.2x the floor.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from steamprice.models import PriceChange
from steamprice.notify.embeds import MAX_EMBEDS
from tests.support.fakes.discord import FakeDiscord
from tests.support.notify import Notifiers, price_change, shown

CHANGES = 1_000
SCALE = 10.0
BUCKET = (5, 2.0)  # requests per seconds, per webhook
CHANNEL = (30, 60.0)  # messages per seconds, per channel (hidden)
TARGET_RATIO = 1.2


def make_changes() -> list[PriceChange]:
    return [
        price_change(app, event_id=f"bench-discord-{app:08d}") for app in range(10, 10 + CHANGES)
    ]


async def run(name: str, digest_threshold: int) -> dict[str, Any]:
    fake = FakeDiscord(
        bucket=(BUCKET[0], BUCKET[1] / SCALE),
        channel_limit=(CHANNEL[0], CHANNEL[1] / SCALE),
        global_limit=(50, 1.0 / SCALE),
    )
    await fake.start()
    notifiers = Notifiers()
    notifier = await notifiers.start(
        fake.webhook_url("1", "bench-token"),
        discord_channel_messages=CHANNEL[0],
        discord_channel_window_seconds=CHANNEL[1] / SCALE,
        discord_digest_threshold=digest_threshold,
    )
    metrics = notifier.metrics
    try:
        started = time.monotonic()
        await notifier.enqueue(make_changes())
        while metrics.registry.get_sample_value(
            "steam_discord_deliveries_total", {"status": "sent"}
        ) != float(CHANGES):
            deadline = 60 + 3 * CHANNEL[1] / SCALE * CHANGES / MAX_EMBEDS / CHANNEL[0]
            if time.monotonic() - started > deadline:
                raise RuntimeError(f"{name}: not all changes delivered after {deadline:.0f} s")
            await asyncio.sleep(0.05)
        elapsed = (fake.messages[-1].time - started) * SCALE
        times_shown = shown(fake)
        messages = math.ceil(CHANGES / MAX_EMBEDS)
        floor = messages / CHANNEL[0] * CHANNEL[1]
        # Tighter: full channel windows, then the last window's messages in bucket bursts.
        windows, last = divmod(messages - 1, CHANNEL[0])
        burst_floor = windows * CHANNEL[1] + (last // BUCKET[0]) * BUCKET[1]
        result = {
            "changes": CHANGES,
            "delivered_once": len(times_shown) == CHANGES and set(times_shown.values()) == {1},
            "seconds": round(elapsed, 1),
            "floor_seconds": round(floor, 1),
            "ratio_to_floor": round(elapsed / floor, 3),
            "burst_floor_seconds": round(burst_floor, 1),
            "ratio_to_burst_floor": round(elapsed / burst_floor, 3),
            "messages": len(fake.messages),
            "digest_messages": sum(1 for m in fake.messages if "url" not in m.embeds[0]),
            "requests": len(fake.requests),
            "http_429": fake.count_429,
            "requests_in_retry_window": fake.requests_in_retry_window,
        }
        print(
            f"{name:>7}: {CHANGES} changes in {result['seconds']} s (scaled back x{SCALE:g})"
            f" vs floor {floor:.0f} s = {result['ratio_to_floor']}x (burst floor"
            f" {burst_floor:.0f} s = {result['ratio_to_burst_floor']}x); {len(fake.messages)}"
            f" messages ({result['digest_messages']} digests), {len(fake.requests)} requests,"
            f" {fake.count_429} x 429,"
            f" {fake.requests_in_retry_window} inside a retry window;"
            f" each change shown once: {result['delivered_once']}",
            flush=True,
        )
        return result
    finally:
        await notifiers.close()
        await fake.stop()


async def main() -> dict[str, Any]:
    embeds = await run("embeds", digest_threshold=0)
    digest = await run("digest", digest_threshold=100)
    ok = (
        embeds["delivered_once"]
        and digest["delivered_once"]
        and embeds["requests_in_retry_window"] == digest["requests_in_retry_window"] == 0
        and embeds["ratio_to_floor"] <= TARGET_RATIO
    )
    print(f"target (all once, 0 in a retry window, <= {TARGET_RATIO}x the floor): {ok}")
    return {"scale": SCALE, "embeds": embeds, "digest": digest, "target_met": ok}
