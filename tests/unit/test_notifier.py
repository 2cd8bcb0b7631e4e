"""The notifier's rules without a network: the default rule's filters, the channel window, settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from steamprice.models import PriceChange
from steamprice.notify.lock import lock_name
from steamprice.notify.rules import AlertRule, default_rule
from steamprice.notify.webhook import MessageWindow
from steamprice.settings import Secret, Settings, SettingsError, load_settings

T = datetime(2025, 8, 18, 17, 0, tzinfo=UTC)
HOOK = "https://discord.com/api/webhooks/1/token"


def change(**kw: object) -> PriceChange:
    fields: dict[str, object] = {
        "event_id": "e",
        "app_id": 730,
        "cc": "us",
        "kind": "discount_started",
        "old_status": "priced",
        "new_status": "priced",
        "old_currency": "USD",
        "new_currency": "USD",
        "old_initial": 1999,
        "old_final": 1999,
        "old_discount": 0,
        "new_initial": 1999,
        "new_final": 999,
        "new_discount": 50,
        "observed_at": T,
        "previous_observed_at": T,
    }
    fields.update(kw)
    return PriceChange(**fields)


def rule_of(**kw: object) -> AlertRule:
    settings = Settings(discord_webhook_url=Secret(HOOK), **kw)  # type: ignore[arg-type]
    rule = default_rule(settings)
    assert rule is not None
    return rule


def test_default_rule_lets_every_change_through() -> None:
    f = rule_of()
    for kind in ("discount_started", "list_price_increased", "became_unknown"):
        assert f.skip_reason(change(kind=kind, new_status="unknown", new_final=None)) is None


@pytest.mark.parametrize(
    ("settings", "event", "reason"),
    [
        ({"discord_watchlist": (570,)}, change(), "app not in the watchlist"),
        ({"discord_regions": ("gb",)}, change(), "region not watched"),
        ({"discord_kinds": ("discount_ended",)}, change(), "kind discount_started not watched"),
        ({"discord_min_discount": 60}, change(), "discount 50% < 60%"),
        # A "discount" with final >= initial (free-to-keep promotion) is no real cut.
        (
            {"discord_min_discount": 10},
            change(new_final=1999, new_discount=100),
            "discount 0% < 10%",
        ),
        (
            {"discord_min_discount": 10},
            change(kind="became_unpriced", new_status="no_price", new_final=None),
            "discount 0% < 10%",
        ),
        ({"discord_only_historical_lows": True}, change(), "not a historical low"),
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
    assert f.skip_reason(change(new_historical_low=True)) is None
    assert f.skip_reason(change(matches_historical_low=True)) is None


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
