"""The notifier's rules without a network: opt-in filters, the channel window, its settings."""

from __future__ import annotations

import pytest

from steamprice.models import PriceChange
from steamprice.notify.filters import NotifyFilter
from steamprice.notify.lock import lock_name
from steamprice.notify.webhook import MessageWindow
from steamprice.settings import Settings, SettingsError, load_settings
from tests.support.notify import price_change


def test_default_filter_lets_every_change_through() -> None:
    f = NotifyFilter.from_settings(Settings())
    for kind in ("discount_started", "list_price_increased", "became_unknown"):
        assert f.skip_reason(price_change(kind=kind, new_status="unknown", new_final=None)) is None


@pytest.mark.parametrize(
    ("flt", "event", "reason"),
    [
        (NotifyFilter(watchlist=frozenset({570})), price_change(), "not in DISCORD_WATCHLIST"),
        (NotifyFilter(regions=frozenset({"gb"})), price_change(), "region not in DISCORD_REGIONS"),
        (
            NotifyFilter(kinds=frozenset({"discount_ended"})),
            price_change(),
            "kind not in DISCORD_KINDS",
        ),
        (NotifyFilter(min_discount=60), price_change(), "discount 50% < DISCORD_MIN_DISCOUNT"),
        # A "discount" with final >= initial (free-to-keep promotion) is no real cut.
        (
            NotifyFilter(min_discount=10),
            price_change(new_final=1999, new_discount=100),
            "discount 0% < DISCORD_MIN_DISCOUNT",
        ),
        (
            NotifyFilter(min_discount=10),
            price_change(kind="became_unpriced", new_status="no_price", new_final=None),
            "discount 0% < DISCORD_MIN_DISCOUNT",
        ),
        (NotifyFilter(only_historical_lows=True), price_change(), "not a historical low"),
    ],
)
def test_each_filter_names_why_it_skips(flt: NotifyFilter, event: PriceChange, reason: str) -> None:
    assert flt.skip_reason(event) == f"filter: {reason}"


def test_a_change_passing_every_filter_is_notified() -> None:
    f = NotifyFilter(
        min_discount=50,
        kinds=frozenset({"discount_started"}),
        regions=frozenset({"us"}),
        watchlist=frozenset({730}),
        only_historical_lows=True,
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
