"""The notifier service against the real MariaDB and the fake webhook: each Discord rule.

The service runs in-process (no Kafka): changes are queued as the sink agent queues them and
the assertions read the fake's accepted messages and the ledger. Windows of the fake are
scaled down where a rule needs time to show (its ratios kept).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import tests.support.fakes.discord as fake_module
from steamprice.notify.embeds import changes_shown
from tests.support.fakes.discord import FakeDiscord
from tests.support.infra import wait_for
from tests.support.notify import Notifiers, metric, price_change, shown
from tests.support.processes import Pipeline


async def test_every_change_is_posted_once_one_embed_per_app(notifiers: Notifiers) -> None:
    async with FakeDiscord() as fake:
        n = await notifiers.start(fake.webhook_url("11", "tok-secret-1", version=10))
        await notifiers.query("INSERT INTO apps (app_id, name) VALUES (3, 'Portal 2')")
        events = [price_change(a, cc) for a in range(1, 26) for cc in ("us", "gb")]
        assert await n.enqueue(events) == 50
        await notifiers.delivered(50)

        assert [len(m.embeds) for m in fake.messages] == [10, 10, 5]
        assert shown(fake) == Counter({(a, cc): 1 for a in range(1, 26) for cc in ("us", "gb")})
        first = fake.messages[0]
        assert first.api_version == 10 and first.wait
        assert first.payload["allowed_mentions"] == {"parse": []}
        portal = next(e for m in fake.messages for e in m.embeds if e["url"].endswith("/app/3/"))
        assert portal["title"] == "Portal 2"
        ids = await notifiers.query("SELECT DISTINCT message_id FROM discord_deliveries")
        assert {r[0] for r in ids} == {m.message_id for m in fake.messages}
        assert fake.requests_in_retry_window == 0 and fake.count_429 == 0

        # Redelivered changes (a crash before the Kafka commit) are already in the ledger.
        assert await n.enqueue(events) == 0
        await n.enqueue([price_change(99)])
        await notifiers.delivered(51)
        assert len(fake.messages) == 4 and changes_shown(fake.messages[3].embeds) == [(99, "us")]
        assert metric(n, "steam_discord_deliveries_total", status="sent") == 51
        assert metric(n, "steam_discord_messages_total", format="embeds") == 4


async def test_hidden_channel_limit_429_is_waited_in_seconds_then_the_same_message_resent(
    notifiers: Notifiers,
) -> None:
    # The fake's channel allows 2 messages / 3 s, which the notifier does not know; the webhook
    # URL has no version (v6: milliseconds) but is posted on v10, where retry_after is seconds.
    async with FakeDiscord(channel_limit=(2, 3.0)) as fake:
        n = await notifiers.start(fake.webhook_url("12", "tok"), discord_digest_threshold=0)
        await n.enqueue([price_change(a) for a in range(1, 41)])
        await notifiers.delivered(40)

        assert {r.api_version for r in fake.requests} == {10}
        assert shown(fake) == Counter({(a, "us"): 1 for a in range(1, 41)})
        assert fake.count_429 >= 1
        assert {r.reason for r in fake.requests if r.status == 429} == {"shared"}
        assert fake.requests_in_retry_window == 0
        assert metric(n, "steam_discord_rate_limited_total", scope="shared") == fake.count_429


async def test_global_429_pauses_then_resends(notifiers: Notifiers) -> None:
    async with FakeDiscord(global_retry_after=1.5) as fake:
        fake.fail_next(1, "global429")
        n = await notifiers.start(fake.webhook_url("13", "tok", version=10))
        await n.enqueue([price_change(a) for a in range(1, 4)])
        await notifiers.delivered(3)
        assert [r.status for r in fake.requests] == [429, 200]
        assert fake.requests[1].time - fake.requests[0].time >= 1.5
        assert fake.requests_in_retry_window == 0
        assert metric(n, "steam_discord_rate_limited_total", scope="global") == 1


async def test_cloudflare_ban_pauses_every_send(notifiers: Notifiers) -> None:
    async with FakeDiscord(cloudflare_pause=2.0) as fake:
        fake.fail_next(1, "cloudflare")
        n = await notifiers.start(
            fake.webhook_url("14", "tok", version=10), discord_ban_pause_seconds=2.5
        )
        await n.enqueue([price_change(1)])
        await notifiers.delivered(1)
        assert [r.status for r in fake.requests] == [429, 200]
        assert fake.requests_after_cloudflare == 0
        assert metric(n, "steam_discord_rate_limited_total", scope="cloudflare") == 1
        assert metric(n, "steam_rate_limit_pauses_total", endpoint="discord", reason="banned") == 1


async def test_5xx_and_timeouts_are_retried_with_backoff(notifiers: Notifiers) -> None:
    async with FakeDiscord(timeout_delay=5.0) as fake:
        fake.fail_next(1, "502")
        fake.fail_next(1, "timeout")
        n = await notifiers.start(
            fake.webhook_url("15", "tok", version=10), discord_request_timeout_seconds=1.0
        )
        await n.enqueue([price_change(1), price_change(2)])
        await notifiers.delivered(2)
        assert [r.status for r in fake.requests[:1]] == [502]
        assert len(fake.messages) == 1 and shown(fake) == Counter({(1, "us"): 1, (2, "us"): 1})
        assert metric(n, "steam_api_requests_total", endpoint="discord", status="502") == 1
        assert metric(n, "steam_api_requests_total", endpoint="discord", status="timeout") == 1
        assert (await notifiers.query("SELECT MAX(attempts) FROM discord_deliveries")) == [(3,)]


async def test_deleted_webhook_is_never_called_again_until_reconfigured(
    notifiers: Notifiers,
) -> None:
    async with FakeDiscord() as fake:
        url = fake.webhook_url("16", "tok-deleted", version=10)
        fake.delete_webhook("16")
        n = await notifiers.start(url)
        await n.enqueue([price_change(1), price_change(2)])
        await wait_for("the webhook to be disabled", lambda: _true(n.disabled_reason))
        assert "404 code 10015" in n.disabled_reason
        assert metric(n, "steam_discord_webhook_enabled") == 0
        assert metric(n, "steam_discord_deliveries_total", status="disabled") == 1
        await n.enqueue([price_change(3)])
        assert await notifiers.ledger() == {"pending": 3}  # changes stay recorded

        # A restart with the same URL remembers it: no call at all.
        await notifiers.stop(n)
        again = await notifiers.start(url)
        await wait_for("the restart to know", lambda: _true(again.disabled_reason))
        # The deletion was found by asking for the webhook's channel (GET), before any post.
        assert fake.webhook_gets == [("16", 404)] and fake.requests == []
        await notifiers.stop(again)

        # A new webhook URL is a new configuration: everything queued is delivered once.
        await notifiers.start(fake.webhook_url("17", "tok-new", version=10))
        await notifiers.delivered(3)
        assert shown(fake) == Counter({(1, "us"): 1, (2, "us"): 1, (3, "us"): 1})
        assert fake.calls_after_delete == 0


async def test_bad_token_disables_the_webhook(notifiers: Notifiers) -> None:
    async with FakeDiscord() as fake:
        fake.invalid_token("18")
        n = await notifiers.start(fake.webhook_url("18", "tok-bad", version=10))
        await n.enqueue([price_change(1)])
        await wait_for("the webhook to be disabled", lambda: _true(n.disabled_reason))
        assert "401 code 50027" in n.disabled_reason
        rows = await notifiers.query("SELECT webhook_id, disabled_reason FROM discord_webhooks")
        assert rows == [("18", "HTTP 401 code 50027")]
        assert await notifiers.ledger() == {"pending": 1}


async def test_400_isolates_the_offending_app_and_delivers_the_others(
    notifiers: Notifiers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Discord validates more than lengths (URLs, for one); the fake is taught to refuse one app.
    real = fake_module.validate_payload

    def refuse_broken(body: dict[str, Any]) -> dict[str, Any] | None:
        if any("Broken Game" in str(e) for e in body.get("embeds") or []):
            return {"code": 50035, "message": "Invalid Form Body", "errors": {"embeds": {}}}
        return real(body)

    monkeypatch.setattr(fake_module, "validate_payload", refuse_broken)
    async with FakeDiscord() as fake:
        n = await notifiers.start(fake.webhook_url("19", "tok", version=10))
        await notifiers.query("INSERT INTO apps (app_id, name) VALUES (7, 'Broken Game')")
        await n.enqueue([price_change(a) for a in range(1, 13)])
        await notifiers.delivered(11)
        await notifiers.delivered(1, status="rejected")
        assert shown(fake) == Counter({(a, "us"): 1 for a in range(1, 13) if a != 7})
        rows = await notifiers.query(
            "SELECT app_id, detail FROM discord_deliveries WHERE status = 'rejected'"
        )
        assert rows == [(7, "HTTP 400 code 50035")]
        assert fake.requests_in_retry_window == 0


async def test_filters_skip_changes_and_record_why(notifiers: Notifiers) -> None:
    async with FakeDiscord() as fake:
        n = await notifiers.start(
            fake.webhook_url("20", "tok", version=10),
            discord_min_discount=30,
            discord_regions=("us",),
        )
        await n.enqueue(
            [
                price_change(1),  # 50 % in the US: notified
                price_change(2, new_final=1799, new_discount=10),
                price_change(3, "gb"),
                price_change(4, kind="list_price_increased", new_initial=2499, new_final=2499),
            ]
        )
        await notifiers.delivered(1)
        assert shown(fake) == Counter({(1, "us"): 1})
        rows = await notifiers.query(
            "SELECT app_id, detail FROM discord_deliveries WHERE status = 'skipped' ORDER BY 1"
        )
        assert rows == [
            (2, "filter: discount 10% < 30%"),
            (3, "filter: region not watched"),
            (4, "filter: discount 0% < 30%"),
        ]
        assert metric(n, "steam_discord_deliveries_total", status="skipped") == 3


async def test_sale_wave_goes_out_as_digests_without_a_single_429(notifiers: Notifiers) -> None:
    async with FakeDiscord() as fake:  # 5 requests / 2 s and 30 messages / 60 s
        n = await notifiers.start(
            fake.webhook_url("21", "tok", version=10), discord_digest_threshold=20
        )
        await n.enqueue([price_change(a, cc) for a in range(1, 161) for cc in ("us", "gb")])
        await notifiers.delivered(320)
        assert shown(fake) == Counter({(a, cc): 1 for a in range(1, 161) for cc in ("us", "gb")})
        digests = [m for m in fake.messages if "url" not in m.embeds[0]]
        assert digests and len(fake.messages) <= 5  # one embed per app would need 16
        assert fake.count_429 == 0 and fake.requests_in_retry_window == 0
        # The tail, once fewer than 20 apps wait, goes back to one rich embed per app.
        assert "url" in fake.messages[-1].embeds[0]


async def test_in_flight_changes_at_a_crash_are_uncertain_not_reposted(
    notifiers: Notifiers,
) -> None:
    async with FakeDiscord() as fake:
        n = await notifiers.start(fake.webhook_url("22", "tok", version=10))
        await notifiers.stop(n)
        # What a kill -9 between the 'sending' mark and the 'sent' mark leaves behind.
        await notifiers.query(
            "INSERT INTO discord_deliveries (event_id, app_id, cc, kind, status, change_json)"
            " VALUES ('ev-1-us-', 1, 'us', 'discount_started', 'sending', %s),"
            " ('ev-2-us-', 2, 'us', 'discount_started', 'pending', %s)",
            (price_change(1).dumps().decode(), price_change(2).dumps().decode()),
        )
        n = await notifiers.start(fake.webhook_url("22", "tok", version=10))
        await notifiers.delivered(1)
        assert shown(fake) == Counter({(2, "us"): 1})
        assert (await notifiers.ledger()) == {"sent": 1, "uncertain": 1}
        assert metric(n, "steam_discord_deliveries_total", status="uncertain") == 1
        await wait_for(
            "the uncertain gauge",
            lambda: _true(metric(n, "steam_queue_size", queue="discord_uncertain") == 1),
        )
        await notifiers.stop(n)

        # An operator who prefers a possible duplicate to a possible loss opts in.
        await notifiers.query("UPDATE discord_deliveries SET status = 'sending' WHERE app_id = 1")
        await notifiers.start(
            fake.webhook_url("22", "tok", version=10), discord_resend_uncertain=True
        )
        await notifiers.delivered(2)
        assert shown(fake) == Counter({(1, "us"): 1, (2, "us"): 1})


async def test_one_sender_per_database_and_failover(notifiers: Notifiers) -> None:
    async with FakeDiscord() as fake:
        url = fake.webhook_url("23", "tok", version=10)
        a = await notifiers.start(url)
        b = await notifiers.start(url)
        await asyncio.gather(
            a.enqueue([price_change(x) for x in range(1, 31)]),
            b.enqueue([price_change(x) for x in range(31, 61)]),
        )
        await notifiers.delivered(60)
        assert [a.leader, b.leader].count(True) == 1
        assert shown(fake) == Counter({(x, "us"): 1 for x in range(1, 61)})
        # Six messages in a row: the 5 / 2 s bucket was read from the headers, never hit.
        assert len(fake.messages) == 6 and fake.count_429 == 0

        leader, follower = (a, b) if a.leader else (b, a)
        await notifiers.stop(leader)
        await follower.enqueue([price_change(99)])
        await notifiers.delivered(61)
        assert follower.leader and shown(fake)[(99, "us")] == 1


async def test_channel_window_survives_a_restart(notifiers: Notifiers) -> None:
    async with FakeDiscord(channel_limit=(3, 4.0)) as fake:
        url = fake.webhook_url("24", "tok", version=10)
        settings = {"discord_channel_messages": 3, "discord_channel_window_seconds": 4.0}
        n = await notifiers.start(url, **settings)
        for x in range(1, 4):  # three separate messages fill the channel's window
            await n.enqueue([price_change(x)])
            await notifiers.delivered(x)
        await notifiers.stop(n)
        n = await notifiers.start(url, **settings)
        await n.enqueue([price_change(4)])
        await notifiers.delivered(4)
        assert fake.count_429 == 0 and len(fake.messages) == 4
        assert fake.messages[3].time - fake.messages[0].time >= 4.0


async def _true(value: object) -> bool:
    return bool(value)


async def test_a_429_window_is_stored_by_channel_and_honoured_by_the_next_sender(
    notifiers: Notifiers,
) -> None:
    # The fake's channel takes 2 messages per 6 s, which the notifier does not know.
    async with FakeDiscord(channel_limit=(2, 6.0)) as fake:
        url = fake.webhook_url("26", "tok", version=10)
        n = await notifiers.start(url)
        for x in range(1, 4):  # three separate messages: the third gets a 429 (shared)
            await n.enqueue([price_change(x)])
            if x < 3:
                await notifiers.delivered(x)

        async def requeued() -> bool:
            return fake.count_429 == 1 and await notifiers.ledger() == {"sent": 2, "pending": 1}

        await wait_for("the 429 taken in", requeued, every=0.02)
        await notifiers.stop(n)
        channel = fake.channel_of("26")
        assert await notifiers.query(
            "SELECT scope, scope_key, reason FROM discord_rate_limits"
        ) == [("channel", channel, "shared")]
        assert await notifiers.query(
            "SELECT webhook_id, channel_id FROM discord_webhook_channels"
        ) == [("26", channel)]

        n = await notifiers.start(url)
        await notifiers.delivered(3)
        assert fake.requests_in_retry_window == 0 and fake.count_429 == 1
        assert fake.requests[-1].time >= fake.retry_window_end("26")


async def test_operator_commands_requeue_uncertain_changes_and_enable_a_webhook(
    notifiers: Notifiers, tmp_path: Path
) -> None:
    async with FakeDiscord() as fake:
        url = fake.webhook_url("27", "tok-27-secret", version=10)
        steamprice = Pipeline(tmp_path, MYSQL_DB=notifiers.db, DISCORD_WEBHOOK_URL=url).cli
        fake.delete_webhook("27")
        n = await notifiers.start(url)
        await n.enqueue([price_change(1)])
        await wait_for("the webhook to be disabled", lambda: _true(n.disabled_reason))
        await notifiers.stop(n)
        # What a kill -9 mid-post leaves behind, once the next sender looked at it.
        await notifiers.query(
            "INSERT INTO discord_deliveries (event_id, app_id, cc, kind, status, change_json)"
            " VALUES ('ev-2-us-', 2, 'us', 'discount_started', 'uncertain', %s)",
            (price_change(2).dumps().decode(),),
        )

        fake.restore_webhook("27")  # say, the channel's permission was fixed
        said = await steamprice("discord-enable-webhook")
        assert "enabled again" in said and "HTTP 404 code 10015" in said
        assert await notifiers.query("SELECT COUNT(*) FROM discord_webhooks") == [(0,)]
        assert "is not disabled" in await steamprice("discord-enable-webhook")
        n = await notifiers.start(url)
        await notifiers.delivered(1)
        assert shown(fake) == Counter({(1, "us"): 1})  # the uncertain one is left alone

        said = await steamprice("discord-requeue-uncertain")
        assert "Re-queued 1 uncertain changes" in said
        await notifiers.delivered(2)
        assert shown(fake) == Counter({(1, "us"): 1, (2, "us"): 1})
        assert "No uncertain changes" in await steamprice("discord-requeue-uncertain")
        assert "tok-27-secret" not in said
