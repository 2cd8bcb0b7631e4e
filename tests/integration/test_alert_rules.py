"""Alert rules on the real stack: `steamprice alerts`, a worker, the fake Steam and Discord.

Three rules on two channels -- a watchlist with a target price and a minimum discount (channel
A), historical lows (channel B) -- get exactly the changes that match them, once each; a rule
added while the worker runs takes effect without a restart; a deleted webhook disables only its
own rule.
"""

from __future__ import annotations

import re
from collections import Counter

from steamprice.notify.embeds import changes_shown
from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.infra import wait_for
from tests.support.processes import Pipeline, seed_apps

WATCH, DEEP, LOWS, LIVE = "701", "702", "703", "704"
TOKENS = {
    WATCH: "tok-watch-0001",
    DEEP: "tok-deep-0002",
    LOWS: "tok-lows-0003",
    LIVE: "tok-live-04",
}
CHANNEL_A, CHANNEL_B = "8001", "8002"


def shown(discord: FakeDiscord, webhook: str) -> Counter[int]:
    """How many times each app was shown in messages of one webhook."""
    return Counter(a for m in discord.messages_for(webhook) for a, _ in changes_shown(m.embeds))


async def ledger_by_rule(pipeline: Pipeline) -> dict[tuple[str, str], int]:
    rows = await pipeline.query(
        "SELECT rule_name, status, COUNT(*) FROM discord_deliveries GROUP BY rule_name, status"
    )
    return {(str(r), str(s)): int(n) for r, s, n in rows}


async def test_rules_route_each_change_once_live_changes_and_a_deleted_webhook(
    pipeline: Pipeline, steam: FakeSteam, discord: FakeDiscord
) -> None:
    # No default rule: only the rules of the topic (the DISCORD_* settings are another test's).
    pipeline.env["DISCORD_WEBHOOK_URL"] = ""
    for hook in (WATCH, DEEP):
        discord.set_channel(hook, CHANNEL_A)
    for hook in (LOWS, LIVE):
        discord.set_channel(hook, CHANNEL_B)
    url = {h: discord.webhook_url(h, t) for h, t in TOKENS.items()}

    # Refused input changes nothing (a usage error is exit status 2, a bad value 1).
    for args, message in [
        (("--webhook", "https://discord.com/api/channels/1", "--apps", "10"), "/api/webhooks/ID"),
        (("--webhook", url[WATCH], "--apps", "10,x"), "app id 'x'"),
        (("--webhook", url[WATCH], "--max-price", "us=-1"), "negative"),
        (("--webhook", url[WATCH], "--regions", "zz"), "unknown region 'zz'"),
    ]:
        out = await pipeline.cli_fails("alerts", "add", "bad", *args)
        assert message in out and "Traceback" not in out
    # Faust's own -A/--app no longer swallows --apps: a usage error, not a traceback.
    out = await pipeline.cli_fails("anything", "--apps", "1,2", status=2)
    assert "No such command 'anything'" in out and "Traceback" not in out
    out = await pipeline.cli_fails("alerts", "list", "--apps", "1,2", status=2)
    assert "only apply to 'add'" in out and "Traceback" not in out

    await pipeline.cli(
        "alerts", "add", "watch", "--webhook", url[WATCH], "--apps", "10,20,30",
        "--max-price", "us=4.99",
    )  # fmt: skip
    await pipeline.cli("alerts", "add", "deep", "--webhook", url[DEEP], "--min-discount", "50")
    await pipeline.cli("alerts", "add", "lows", "--webhook", url[LOWS], "--historical-low")
    listed = await pipeline.cli("alerts", "list")
    assert [line.split()[0] for line in listed.strip().splitlines()] == ["deep", "lows", "watch"]
    assert "webhook 701/…0001" in listed
    assert all(t not in listed for t in TOKENS.values())

    # `alerts test` posts one sample embed through the rule's webhook and shows the answer.
    out = await pipeline.cli("alerts", "test", "lows")
    assert "Discord accepted the test message (message id" in out
    [sample] = discord.messages
    assert sample.webhook_id == LOWS
    assert sample.embeds[0]["title"] == "steamprice test of alert rule lows"
    discord.reset_stats()

    for app in (10, 20, 30, 40):
        steam.set_price(app, "us", 999, 999, 0)
    worker = pipeline.worker(SEED_DEDUPE_SECONDS="0")
    await worker.start()
    await seed_apps(pipeline, [10, 20, 30, 40])

    async def priced() -> bool:
        return len(await pipeline.query("SELECT 1 FROM price_current")) == 4

    await wait_for("4 apps priced", priced)

    steam.set_price(10, "us", 999, 499, 50)  # watch (<= 4.99), deep (50 %), lows
    steam.set_price(20, "us", 999, 799, 20)  # lows only (a new low, but 7.99 > 4.99 and 20 %)
    steam.set_price(30, "us", 999, 299, 70)  # deep and lows; watch: 2.99 <= 4.99 too
    steam.set_price(40, "us", 1299, 1299, 0)  # a list price rise: nobody's
    await seed_apps(pipeline, [10, 20, 30, 40])
    owed = {WATCH: {10: 1, 30: 1}, DEEP: {10: 1, 30: 1}, LOWS: {10: 1, 20: 1, 30: 1}}

    async def all_sent() -> dict[tuple[str, str], int] | None:
        ledger = await ledger_by_rule(pipeline)
        want = {("watch", "sent"): 2, ("deep", "sent"): 2, ("lows", "sent"): 3}
        return ledger if ledger == want else None

    await wait_for("each rule's changes sent", all_sent, timeout=90)
    assert {h: shown(discord, h) for h in owed} == {h: Counter(a) for h, a in owed.items()}
    channels = {m.webhook_id: m.channel_id for m in discord.messages}
    assert channels == {WATCH: CHANNEL_A, DEEP: CHANNEL_A, LOWS: CHANNEL_B}
    # Each webhook's channel was asked once, before its first post.
    assert sorted(h for h, _ in discord.webhook_gets) == [WATCH, DEEP, LOWS]
    assert discord.count_429 == 0 and discord.requests_in_retry_window == 0
    mirror = await pipeline.query("SELECT name, channel_id, webhook_hint FROM alert_rules")
    assert sorted(mirror) == [
        ("deep", CHANNEL_A, "webhook 702/…0002"),
        ("lows", CHANNEL_B, "webhook 703/…0003"),
        ("watch", CHANNEL_A, "webhook 701/…0001"),
    ]

    # A rule added while the worker runs applies to the next changes, without a restart.
    await pipeline.cli("alerts", "add", "rises", "--webhook", url[LIVE], "--kinds",
                       "list_price_increased")  # fmt: skip

    async def rule_known() -> bool:
        return "rises" in {r[0] for r in await pipeline.query("SELECT name FROM alert_rules")}

    await wait_for("the worker to know the new rule", rule_known, timeout=30)
    steam.set_price(40, "us", 1499, 1499, 0)
    await seed_apps(pipeline, [40])

    async def rise_sent() -> bool:
        return (await ledger_by_rule(pipeline)).get(("rises", "sent")) == 1

    await wait_for("the new rule's change", rise_sent, timeout=60)
    assert shown(discord, LIVE) == Counter({40: 1})
    assert {h: shown(discord, h) for h in owed} == {h: Counter(a) for h, a in owed.items()}

    # A deleted webhook disables its rule alone: the others keep posting.
    discord.delete_webhook(DEEP)
    steam.set_price(30, "us", 999, 199, 80)  # deep (its webhook now gone), lows, watch
    steam.set_price(20, "us", 999, 99, 90)  # deep, lows, watch
    await seed_apps(pipeline, [20, 30])

    async def others_sent() -> dict[tuple[str, str], int] | None:
        ledger = await ledger_by_rule(pipeline)
        done = ledger.get(("lows", "sent")) == 5 and ledger.get(("watch", "sent")) == 4
        return ledger if done and ledger.get(("deep", "pending")) == 2 else None

    ledger = await wait_for("the other rules to post, deep to wait", others_sent, timeout=90)
    assert ledger[("deep", "sent")] == 2
    assert shown(discord, LOWS) == Counter({10: 1, 20: 2, 30: 2})
    assert shown(discord, WATCH) == Counter({10: 1, 20: 1, 30: 2})
    assert discord.calls_after_delete == 0
    metrics = await worker.metrics()
    assert 'steam_discord_rule_enabled{rule="deep"} 0.0' in metrics
    assert 'steam_discord_rule_enabled{rule="lows"} 1.0' in metrics
    assert re.search(
        r'steam_discord_rule_changes_total\{outcome="sent",rule="lows"\} 5\.0', metrics
    )
    status = await pipeline.cli("status", "--worker-url", worker.url)
    assert re.search(r"rule deep +DISABLED \(HTTP 404 code 10015", status), status
    assert re.search(r"rule lows +on, channel 8002", status), status
    assert "channel 8001: 2 waiting" in status, status

    out = await pipeline.cli_fails("alerts", "test", "deep")
    assert "Discord answered HTTP 404 code 10015: the webhook is deleted" in out

    everything = worker.log() + metrics + status + listed
    assert all(t not in everything for t in TOKENS.values())
