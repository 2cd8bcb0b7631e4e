"""Alert rules (steamprice.notify.rules): validation, amounts, matching, the wire format, routing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from steamprice.models import PriceChange
from steamprice.notify.rulebook import apply_record
from steamprice.notify.rules import (
    AlertRule,
    RuleError,
    RuleIndex,
    Target,
    build_rule,
    default_rule,
    format_amount,
    parse_amount,
    redact_webhook,
    rule_from_json,
)
from steamprice.report import RuleRows, alert_rules_report
from steamprice.settings import Secret, Settings
from tests.support.records import price_change

HOOK = "https://discord.com/api/webhooks/123456789012345678/abcdefghijklmnopSECRETwxyz"
T = datetime(2025, 11, 27, 18, 0, tzinfo=UTC)


def change(app_id: int = 730, cc: str = "us", **kw: Any) -> PriceChange:
    return price_change(app_id, cc, **{"observed_at": T, "previous_observed_at": T, **kw})


def rule(name: str = "deals", **kw: Any) -> AlertRule:
    return build_rule(name, webhook=HOOK, **kw)


@pytest.mark.parametrize(
    ("text", "cc", "amount", "currency"),
    [
        ("19.99", "us", 1999, "USD"),
        ("20", "us", 2000, "USD"),
        ("0.5", "gb", 50, "GBP"),
        ("1200", "jp", 120000, "JPY"),
        ("15000", "kr", 1500000, "KRW"),
        ("9.99", "de", 999, "EUR"),
        ("0", "us", 0, "USD"),
        ("4.99", "ar", 499, "USD"),  # Argentina is priced in USD since 2023-11
    ],
)
def test_amounts_are_read_as_people_write_them_into_steams_x100(
    text: str, cc: str, amount: int, currency: str
) -> None:
    assert parse_amount(text, cc) == Target(amount, currency)
    assert parse_amount(format_amount(amount, currency), cc) == Target(amount, currency)


@pytest.mark.parametrize(
    ("text", "cc", "message"),
    [
        ("-1", "us", "negative"),
        ("19.999", "us", "at most 2 decimals"),
        ("1200.5", "jp", "whole numbers"),
        ("19,99", "de", "without currency signs or thousands separators"),
        ("$19.99", "us", "without currency signs"),
        ("", "us", "digits"),
        ("1e3", "us", "digits"),
        ("5", "xx", "unknown region"),
    ],
)
def test_bad_amounts_are_refused_with_the_reason(text: str, cc: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_amount(text, cc)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"regions": "us,xx"}, "unknown region 'xx'"),
        ({"max_price": ["zz=5"]}, "unknown region 'zz'"),
        ({"max_price": ["us=-5"]}, "negative"),
        ({"max_price": ["us"]}, "REGION=AMOUNT"),
        ({"max_price": ["us=5", "us=6"]}, "given twice"),
        ({"apps": "730,abc"}, "app id 'abc'"),
        ({"apps": "-4"}, "app id '-4'"),
        ({"apps": "0"}, "app id '0'"),
        ({"kinds": "discount_started,sale"}, "unknown change kind 'sale'"),
        ({"min_discount": 101}, "percentage"),
        ({"regions": "us", "max_price": ["jp=100"]}, "outside --regions"),
    ],
)
def test_bad_options_are_refused_with_the_reason(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError, match=message):
        rule(**kw)


@pytest.mark.parametrize(
    "url",
    [
        "https://discord.com/api/channels/1/messages",
        "https://discord.com/webhooks/1/tok",
        "https://discord.com/api/webhooks/abc/tok",
        "not a url",
    ],
)
def test_a_webhook_url_without_the_webhook_shape_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(RuleError) as info:
        build_rule("deals", webhook=url)
    assert "/api/webhooks/ID/TOKEN" in str(info.value) and url not in str(info.value)


@pytest.mark.parametrize("name", ["", "Deals", "-x", "a b", "x" * 65, "default", "é"])
def test_rule_names_are_short_lowercase_words_and_default_is_reserved(name: str) -> None:
    with pytest.raises(RuleError):
        rule(name)


def test_the_webhook_never_shows_in_full() -> None:
    r = rule()
    for text in (repr(r), str(r), str(r.describe()), repr(r.describe())):
        assert "SECRET" not in text and "abcdefghijklmnop" not in text
    assert r.describe()["webhook"] == "webhook 123456789012345678/…wxyz"
    assert redact_webhook("https://discord.com/api/webhooks/1/short") == "webhook 1/…"


def test_each_filter_applies_and_all_must_pass() -> None:
    assert rule().matches(change())
    watch = rule(apps="730,570")
    assert watch.matches(change(570)) and not watch.matches(change(10))
    assert not rule(regions="gb").matches(change(cc="us"))
    assert not rule(kinds="discount_ended").matches(change())
    assert rule(min_discount=50).matches(change())
    assert rule(min_discount=51).skip_reason(change()) == "filter: discount 50% < 51%"
    # A "discount" with final >= initial (free-to-keep promotions) is no real discount.
    promo = change(new_initial=999, new_final=999, new_discount=50)
    assert not rule(min_discount=10).matches(promo)
    low = rule(historical_low=True)
    assert not low.matches(change())
    assert low.matches(change(new_historical_low=True))
    assert low.matches(change(matches_historical_low=True))
    both = rule(apps="730", min_discount=40, historical_low=True)
    assert both.matches(change(new_historical_low=True))
    assert not both.matches(change(new_historical_low=True, new_final=1499, new_discount=25))


def test_target_price_is_at_or_below_in_its_own_region_and_currency() -> None:
    r = rule(max_price=["us=9.99", "jp=1200"])
    assert r.matches(change(new_final=999))
    assert r.skip_reason(change(new_final=1000)) == "filter: 10.00 > target 9.99"
    assert r.matches(change(cc="jp", new_currency="JPY", new_final=120000))
    assert not r.matches(change(cc="jp", new_currency="JPY", new_final=120100))
    # A region without a target is not watched by a rule of targets.
    assert r.skip_reason(change(cc="gb", new_currency="GBP", new_final=1)) == (
        "filter: region not watched"
    )
    # Steam moved a region to another currency: the old target no longer means anything.
    assert "target in JPY" in str(r.skip_reason(change(cc="jp", new_currency="USD", new_final=1)))
    assert r.skip_reason(change(new_status="no_price", new_final=None)) == "filter: not priced"


def test_the_topic_format_round_trips_and_is_checked_like_the_cli() -> None:
    r = rule(
        apps="730,570",
        regions="us,jp",
        kinds="discount_started",
        min_discount=20,
        max_price=["us=19.99", "jp=1200"],
        historical_low=True,
        digest=True,
    )
    assert rule_from_json("deals", r.to_json()) == r
    with pytest.raises(RuleError, match="differs from its key"):
        rule_from_json("other", r.to_json())
    with pytest.raises(RuleError, match="not JSON"):
        rule_from_json("deals", b"{")
    with pytest.raises(RuleError, match="malformed"):
        rule_from_json("deals", b'{"name": "deals"}')
    bad = r.to_json().replace(b'"us,jp"', b"").replace(b'"jp"', b'"xx"')
    with pytest.raises(RuleError, match="unknown region"):
        rule_from_json("deals", bad)


def test_the_settings_define_the_default_rule() -> None:
    assert default_rule(Settings()) is None
    s = Settings(
        discord_webhook_url=Secret(HOOK),
        discord_min_discount=30,
        discord_regions=("us",),
        discord_watchlist=(730,),
    )
    d = default_rule(s)
    assert d is not None and d.name == "default" and d.record_skips
    assert d.matches(change()) and not d.matches(change(cc="gb")) and not d.matches(change(10))


def test_the_index_finds_exactly_the_matching_rules_and_checks_only_candidates() -> None:
    rules = [
        rule("watch-730", apps="730"),
        rule("watch-730-us", apps="730", regions="us"),
        rule("watch-570", apps="570"),
        rule("us-only", regions="us"),
        rule("jp-target", max_price=["jp=1200"]),
        rule("everything"),
        rule("big", min_discount=75),
    ]
    index = RuleIndex(rules)
    events = [
        change(730),
        change(730, "gb", new_currency="GBP"),
        change(570, "jp", new_currency="JPY", new_final=100000),
        change(10),
    ]
    for e in events:
        routed = index.route(e)
        assert {r.name for r in routed.matched} == {r.name for r in rules if r.matches(e)}
        assert len(routed.matched) == len({r.name for r in routed.matched})
    # App 10 in the US at 50 % off: the watchlists, the jp rule and the 75 % rule are never
    # looked at; at 90 % off the 75 % rule is.
    assert index.route(change(10)).evaluated == 2
    assert index.route(change(10, new_final=199, new_discount=90)).evaluated == 3
    assert {r.name for r in index.route(change(10, new_final=199, new_discount=90)).matched} == {
        "us-only",
        "everything",
        "big",
    }


def test_amounts_are_shown_as_written() -> None:
    assert [format_amount(1999, "USD"), format_amount(120000, "JPY"), format_amount(50, "GBP")] == [
        "19.99",
        "1200",
        "0.50",
    ]


def test_topic_records_set_replace_and_remove_rules_and_bad_ones_change_nothing() -> None:
    rules: dict[str, AlertRule] = {}
    r = rule()
    assert apply_record(rules, b"deals", r.to_json()) == ("set", "deals")
    deeper = rule(min_discount=80)
    assert apply_record(rules, b"deals", deeper.to_json()) == ("set", "deals")
    assert rules == {"deals": deeper}
    what, _ = apply_record(rules, b"deals", b'{"name": "deals", "webhook": "nope"}')
    assert what.startswith("invalid: --webhook") and rules == {"deals": deeper}
    assert "SECRET" not in what
    assert apply_record(rules, b"default", r.to_json())[0].startswith("invalid: the default")
    assert apply_record(rules, None, r.to_json())[0] == "invalid: no key"
    assert apply_record(rules, b"deals", None) == ("removed", "deals")
    assert rules == {}


def test_status_reports_rules_and_the_backlog_of_each_channel() -> None:
    mirror = [
        RuleRows("deep", "8001", "webhook 702/…0002", "HTTP 404 code 10015"),
        RuleRows("lows", "8002", "webhook 703/…0003", None),
        RuleRows("watch", "8001", "webhook 701/…0001", None),
    ]
    deliveries = {
        ("deep", "sent"): (2, 90.0),
        ("deep", "pending"): (2, 30.0),
        ("watch", "pending"): (5, 120.0),
        ("lows", "sent"): (3, 100.0),
        ("gone", "skipped"): (4, 500.0),
    }
    rules, channels = alert_rules_report(mirror, deliveries)
    assert [(r["name"], r["pending"], r["removed"]) for r in rules] == [
        ("deep", 2, False),
        ("gone", 0, True),
        ("lows", 0, False),
        ("watch", 5, False),
    ]
    assert rules[0]["disabled"] == "HTTP 404 code 10015"
    assert channels == [
        {"channel": "8001", "rules": ["deep", "watch"], "backlog": 7, "oldest_seconds": 120.0},
        {"channel": "8002", "rules": ["lows"], "backlog": 0, "oldest_seconds": None},
    ]
