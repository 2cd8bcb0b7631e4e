"""The notifier's rules without a network: the default rule's filters, the channel window, settings."""

from __future__ import annotations

from typing import Any

import pytest

from steamprice.metrics import Metrics
from steamprice.models import PriceChange
from steamprice.notify.lock import lock_name
from steamprice.notify.rules import AlertRule, default_rule
from steamprice.notify.webhook import (
    CHANNEL,
    GLOBAL,
    WEBHOOK,
    MessageWindow,
    WebhookClient,
    classify_response,
    parse_webhook_url,
    window_scope,
)
from steamprice.settings import Secret, Settings, SettingsError, load_settings
from tests.support.notify import price_change

HOOK = "https://discord.com/api/webhooks/1/token"


def rule_of(**kw: object) -> AlertRule:
    settings = Settings(discord_webhook_url=Secret(HOOK), **kw)  # type: ignore[arg-type]
    rule = default_rule(settings)
    assert rule is not None
    return rule


def test_default_rule_lets_every_change_through() -> None:
    f = rule_of()
    for kind in ("discount_started", "list_price_increased", "became_unknown"):
        assert f.skip_reason(price_change(kind=kind, new_status="unknown", new_final=None)) is None


@pytest.mark.parametrize(
    ("settings", "event", "reason"),
    [
        ({"discord_watchlist": (570,)}, price_change(), "app not in the watchlist"),
        ({"discord_regions": ("gb",)}, price_change(), "region not watched"),
        (
            {"discord_kinds": ("discount_ended",)},
            price_change(),
            "kind discount_started not watched",
        ),
        ({"discord_min_discount": 60}, price_change(), "discount 50% < 60%"),
        # A "discount" with final >= initial (free-to-keep promotion) is no real cut.
        (
            {"discord_min_discount": 10},
            price_change(new_final=1999, new_discount=100),
            "discount 0% < 10%",
        ),
        (
            {"discord_min_discount": 10},
            price_change(kind="became_unpriced", new_status="no_price", new_final=None),
            "discount 0% < 10%",
        ),
        ({"discord_only_historical_lows": True}, price_change(), "not a historical low"),
    ],
)
def test_each_setting_filter_names_why_it_skips(
    settings: dict[str, object], event: PriceChange, reason: str
) -> None:
    assert rule_of(**settings).skip_reason(event) == f"filter: {reason}"


def test_a_change_passing_every_filter_is_notified() -> None:
    f = rule_of(
        discord_min_discount=50,
        discord_kinds=("discount_started",),
        discord_regions=("us",),
        discord_watchlist=(730,),
        discord_only_historical_lows=True,
    )
    assert f.skip_reason(price_change(new_historical_low=True)) is None
    assert f.skip_reason(price_change(matches_historical_low=True)) is None


def test_filters_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_MIN_DISCOUNT", "40")
    monkeypatch.setenv("DISCORD_KINDS", "discount_started, discount_changed")
    monkeypatch.setenv("DISCORD_REGIONS", "US,gb")
    monkeypatch.setenv("DISCORD_WATCHLIST", "730, 570")
    monkeypatch.setenv("DISCORD_ONLY_HISTORICAL_LOWS", "yes")
    monkeypatch.setenv("DISCORD_DIGEST_THRESHOLD", "0")
    s = load_settings()
    assert s.discord_min_discount == 40
    assert s.discord_kinds == ("discount_started", "discount_changed")
    assert s.discord_regions == ("us", "gb")
    assert s.discord_watchlist == (730, 570)
    assert s.discord_only_historical_lows and s.discord_digest_threshold == 0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DISCORD_MIN_DISCOUNT", "101", "DISCORD_MIN_DISCOUNT"),
        ("DISCORD_KINDS", "sale", "DISCORD_KINDS: 'sale' is not a change kind"),
        ("DISCORD_REGIONS", "usa", "DISCORD_REGIONS: 'usa'"),
        ("DISCORD_WATCHLIST", "730,abc", "DISCORD_WATCHLIST"),
        ("DISCORD_WATCHLIST", "-5", "DISCORD_WATCHLIST: -5 is not an app id"),
        ("DISCORD_DIGEST_THRESHOLD", "-1", "DISCORD_DIGEST_THRESHOLD"),
        ("DISCORD_CHANNEL_MESSAGES", "0", "DISCORD_CHANNEL_MESSAGES"),
        ("DISCORD_CHANNEL_WINDOW_SECONDS", "0", "DISCORD_CHANNEL_WINDOW_SECONDS"),
        ("DISCORD_BAN_PAUSE_SECONDS", "-3", "DISCORD_BAN_PAUSE_SECONDS"),
        ("DISCORD_RESEND_UNCERTAIN", "maybe", "DISCORD_RESEND_UNCERTAIN"),
        ("DISCORD_DIGEST_AFTER_SECONDS", "-1", "DISCORD_DIGEST_AFTER_SECONDS"),
        ("DISCORD_BACKLOG_ALERT_SECONDS", "0", "DISCORD_BACKLOG_ALERT_SECONDS"),
        ("DISCORD_RULE_METRICS_MAX", "-1", "DISCORD_RULE_METRICS_MAX"),
    ],
)
def test_bad_discord_settings_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_window_allows_a_burst_then_waits_for_the_oldest_to_age_out() -> None:
    w = MessageWindow(3, 60.0, margin=0.5)
    assert w.delay(0.0) == 0.0
    for t in (0.0, 1.0, 2.0):
        w.record(t)
    assert w.delay(2.0) == pytest.approx(58.5)  # 0 + 60 + 0.5 - 2
    assert w.delay(60.49) > 0
    assert w.delay(60.5) == pytest.approx(0.0)
    w.record(60.5)
    assert w.delay(60.6) == pytest.approx(0.9)  # the second (t=1) must age out now
    assert len(w) == 3


def test_window_never_allows_more_than_the_limit_in_any_period() -> None:
    w = MessageWindow(30, 6.0)
    now, sent = 0.0, []
    while len(sent) < 200:
        now += max(w.delay(now), 0.05)
        if w.delay(now) <= 0:
            w.record(now)
            sent.append(now)
    for i, t in enumerate(sent):
        assert sum(1 for u in sent[i:] if u < t + 6.0) <= 30


def test_sender_lock_is_per_database_and_fits_mysql() -> None:
    assert lock_name("steam_db") != lock_name("it_123")
    assert len(lock_name("x" * 200)) <= 64


# ---------------------------------------------------------------------- windows a crash keeps

RL = {"x-ratelimit-limit": "5", "x-ratelimit-remaining": "0"}


def answer_429(scope: str, retry_after: float, global_: bool = False) -> Any:
    body = f'{{"retry_after": {retry_after}, "global": {str(global_).lower()}}}'.encode()
    return classify_response(429, {**RL, "x-ratelimit-scope": scope}, body)


def client(**settings: Any) -> WebhookClient:
    hook = parse_webhook_url("https://discord.com/api/webhooks/42/tok")
    return WebhookClient(hook, Settings(**settings), Metrics.create())


def test_a_wait_is_kept_under_what_it_applies_to() -> None:
    user, shared = answer_429("user", 2.0), answer_429("shared", 40.0)
    glob, ban = answer_429("global", 1.0, global_=True), classify_response(429, {}, b"")
    assert window_scope(user, "42", "900") == (WEBHOOK, "42")
    assert window_scope(shared, "42", "900") == (CHANNEL, "900")
    assert window_scope(shared, "42", None) == (WEBHOOK, "42")  # channel not learnt yet
    assert window_scope(glob, "42", "900") == (GLOBAL, "")
    assert ban.action == "ban" and window_scope(ban, "42", "900") == (GLOBAL, "")


def test_the_client_keeps_every_window_until_stored_the_longest_per_key() -> None:
    c = client(discord_ban_pause_seconds=600)
    c.react(answer_429("user", 2.0))
    c.react(answer_429("shared", 40.0))  # the same key (no channel yet): the later end wins
    [w] = c.unsaved()
    assert (w.scope, w.key, w.reason) == (WEBHOOK, "42", "shared")
    c.channel_id = "900"
    c.react(answer_429("shared", 10.0))
    c.react(classify_response(429, {}, b""))  # a Cloudflare ban: every request
    kept = {(w.scope, w.key): w.reason for w in c.unsaved()}
    assert kept == {(WEBHOOK, "42"): "shared", (CHANNEL, "900"): "shared", (GLOBAL, ""): "banned"}
    stored = c.unsaved()
    c.react(answer_429("shared", 500.0))  # arrives while the others are being stored
    c.saved(stored)
    assert [(w.scope, w.reason) for w in c.unsaved()] == [(CHANNEL, "shared")]


def test_a_sent_answer_names_the_channel_the_client_then_knows() -> None:
    outcome = classify_response(200, {}, b'{"id": "1", "channel_id": "900"}')
    assert (outcome.action, outcome.message_id, outcome.channel_id) == ("sent", "1", "900")
    assert classify_response(200, {}, b'{"id": "1"}').channel_id is None


def test_windows_of_a_previous_sender_hold_this_one_capped_by_the_settings() -> None:
    c = client(discord_max_retry_wait_seconds=60, discord_ban_pause_seconds=120)
    assert c.delay(100.0) == 0.0
    assert c.honour([(CHANNEL, "shared", 12.5), (WEBHOOK, "bucket", 1.0)], now=100.0) == 12.5
    assert c.delay(100.0) == pytest.approx(12.5) and c.delay(112.5) == 0.0
    assert c.honour([(GLOBAL, "banned", 10**9)], now=200.0) == 120  # never forever
    assert c.unsaved() == []  # honoured, not stored again
