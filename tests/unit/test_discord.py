"""Embeds, Discord's limits, webhook URLs and the meaning of each webhook answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steamprice.models import PriceChange
from steamprice.notify.embeds import (
    MAX_TOTAL_CHARS,
    AppChanges,
    build_embed,
    changes_shown,
    clip,
    digest_line,
    embed_chars,
    format_price,
    group_by_app,
    message_problems,
    pack_messages,
    payload,
    plan_message,
    text_len,
)
from steamprice.notify.webhook import WebhookUrlError, classify_response, parse_webhook_url
from tests.support.fakes.discord import CLOUDFLARE_BODY, validate_payload
from tests.support.notify import OBSERVED, price_change


def change(cc: str = "us", kind: str = "discount_started", **kw: Any) -> PriceChange:
    """Cyberpunk 2077 on sale (59.99 -> 29.99) in one region."""
    fields: dict[str, Any] = {"event_id": f"e-{cc}-{kind}", "app_id": 1091500, **kw}
    return price_change(cc=cc, kind=kind, before=5999, after=2999, **fields)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://discord.com/api/webhooks/123/tok-EN",
            "https://discord.com/api/v10/webhooks/123/tok-EN?wait=true",
        ),
        (
            "https://discord.com/api/v6/webhooks/123/tok",
            "https://discord.com/api/v10/webhooks/123/tok?wait=true",
        ),
        (
            "https://discord.com/api/v10/webhooks/123/tok?wait=false",
            "https://discord.com/api/v10/webhooks/123/tok?wait=true",
        ),
        (
            "http://127.0.0.1:5555/api/webhooks/1/t/",
            "http://127.0.0.1:5555/api/v10/webhooks/1/t?wait=true",
        ),
    ],
)
def test_webhook_urls_are_normalised_to_v10_with_wait(url: str, expected: str) -> None:
    assert parse_webhook_url(url).url == expected


def test_bad_webhook_url_error_does_not_echo_the_token() -> None:
    with pytest.raises(WebhookUrlError) as err:
        parse_webhook_url("https://example.com/hooks/secret-token-123")
    assert "secret-token-123" not in str(err.value)
    assert "secret" not in parse_webhook_url("https://discord.com/api/webhooks/1/secret").redacted


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1999, "USD", "$19.99"),
        (968000, "JPY", "¥9,680"),
        (1500000, "KRW", "₩15,000"),
        (209900, "PHP", "₱2,099.00"),
        (1999, "EUR", "€19.99"),
        (1999, "XYZ", "19.99 XYZ"),
        (None, "USD", "—"),
    ],
)
def test_prices_are_x100_in_every_currency(amount: int | None, currency: str, text: str) -> None:
    assert format_price(amount, currency) == text


def test_one_embed_per_app_with_a_field_per_region() -> None:
    embed = build_embed(
        1091500,
        "Cyberpunk 2077",
        [
            change("us", new_historical_low=True),
            change("gb", old_currency="GBP", new_currency="GBP"),
        ],
    )
    assert embed["title"] == "Cyberpunk 2077"
    assert embed["url"] == "https://store.steampowered.com/app/1091500/"
    assert [f["name"] for f in embed["fields"]] == ["GB · Sale started", "US · Sale started"]
    us = embed["fields"][1]["value"]
    assert "~~$59.99~~ **$29.99** (-50%)" in us and "historical low" in us
    assert "1091500" in embed["thumbnail"]["url"]
    assert embed["timestamp"] == OBSERVED.isoformat()


def test_embed_title_falls_back_to_app_id_and_is_clipped() -> None:
    assert build_embed(5, None, [change()])["title"] == "App 5"
    assert len(build_embed(5, "x" * 1000, [change()])["title"]) == 256


def test_unpriced_change_reads_plainly() -> None:
    e = build_embed(
        5,
        None,
        [
            change(
                kind="became_unpriced",
                new_status="no_price",
                new_currency=None,
                new_initial=None,
                new_final=None,
                new_discount=None,
            )
        ],
    )
    assert e["fields"][0]["value"] == "**$59.99** → *no price*"


def test_more_than_25_regions_are_summarised() -> None:
    events = [change(f"{chr(97 + i // 26)}{chr(97 + i % 26)}") for i in range(30)]
    e = build_embed(5, "x", events)
    assert len(e["fields"]) == 25 and "5 more regions" in e["description"]


def test_messages_respect_10_embeds_and_6000_characters() -> None:
    small = [build_embed(i, f"Game {i}", [change()]) for i in range(23)]
    sizes = [len(m) for m in pack_messages(small)]
    assert sizes == [10, 10, 3]
    big = [
        build_embed(
            i, "t" * 256, [change(f"{chr(97 + j)}a", old_currency="X" * 300) for j in range(25)]
        )
        for i in range(4)
    ]
    for message in pack_messages(big):
        assert sum(embed_chars(e) for e in message) <= MAX_TOTAL_CHARS
    assert sum(len(m) for m in pack_messages(big)) == 4


def test_payload_never_pings_anyone() -> None:
    assert payload([])["allowed_mentions"] == {"parse": []}


RL = {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1.5"}


@pytest.mark.parametrize(
    ("status", "headers", "body", "action", "wait"),
    [
        (200, RL, b'{"id": "1234"}', "sent", 0.0),
        (204, {}, b"", "sent", 0.0),
        (
            429,
            RL,
            b'{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}',
            "retry_after",
            1.5,
        ),
        (
            429,
            {"Retry-After": "65", "X-RateLimit-Global": "true"},
            b'{"message": "x", "retry_after": 64.57, "global": true}',
            "retry_after",
            64.57,
        ),
        (429, RL, b'{"retry_after": 900000, "global": false}', "retry_after", 3600.0),
        (
            429,
            {},
            b'{"code": 0, "message": "You are being blocked from accessing our API temporarily"}',
            "ban",
            3600.0,
        ),
        (404, {}, b'{"message": "Unknown Webhook", "code": 10015}', "disable", 0.0),
        (401, {}, b'{"message": "Invalid Webhook Token", "code": 50027}', "disable", 0.0),
        (400, {}, b'{"code": 50035, "message": "Invalid Form Body"}', "reject", 0.0),
        (502, {}, b"<html>", "backoff", 0.0),
    ],
)
def test_response_classes(
    status: int, headers: dict[str, str], body: bytes, action: str, wait: float
) -> None:
    outcome = classify_response(status, headers, body)
    assert outcome.action == action
    assert outcome.wait == pytest.approx(wait)


def test_sent_outcome_keeps_the_message_id() -> None:
    assert classify_response(200, {}, json.dumps({"id": "99"}).encode()).message_id == "99"
    assert classify_response(429, RL, b'{"retry_after": 1, "global": true}').global_


# ---------------------------------------------------------------------- limits, measured as Discord


def test_text_is_measured_in_utf16_units_and_clipped_to_the_limit() -> None:
    assert text_len("abc") == 3
    assert text_len("🏆") == 2  # outside the BMP: two UTF-16 units
    clipped = clip("🏆" * 10, 7)
    assert text_len(clipped) <= 7 and clipped.endswith("…")
    assert clip("short", 10) == "short"


def test_every_embed_text_is_clipped_to_its_limit() -> None:
    embed = build_embed(
        5,
        "n" * 5000,
        [change(f"{chr(97 + j)}a", old_currency="X" * 2000, kind="k" * 600) for j in range(26)],
    )
    assert message_problems([embed]) == []
    assert text_len(embed["title"]) == 256
    assert all(text_len(f["name"]) <= 256 and text_len(f["value"]) <= 1024 for f in embed["fields"])


def _embed(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"title": "t", "fields": [{"name": "n", "value": "v"}]}
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("embeds", "problem"),
    [
        ([], "no embeds"),
        ([_embed()] * 11, "11 embeds > 10"),
        ([_embed(title="x" * 257)], "embed 0 title > 256"),
        ([_embed(description="x" * 4097)], "embed 0 description > 4096"),
        ([_embed(footer={"text": "x" * 2049})], "embed 0 footer > 2048"),
        ([_embed(author={"name": "x" * 257})], "embed 0 author > 256"),
        ([_embed(fields=[{"name": "n", "value": "v"}] * 26)], "embed 0 has 26 fields > 25"),
        ([_embed(fields=[{"name": "x" * 257, "value": "v"}])], "embed 0 field 0 name > 256"),
        ([_embed(fields=[{"name": "n", "value": "x" * 1025}])], "embed 0 field 0 value > 1024"),
        ([_embed(fields=[{"name": "n", "value": ""}])], "embed 0 field 0 is empty"),
        (
            [_embed(description="x" * 4000), _embed(description="y" * 2001)],
            "6007 characters > 6000",
        ),
    ],
)
def test_message_problems_name_each_broken_limit(
    embeds: list[dict[str, object]], problem: str
) -> None:
    assert problem in message_problems(embeds)


def test_a_valid_message_has_no_problems_and_the_fake_agrees() -> None:
    embeds = [build_embed(i, f"Game {i}", [change()]) for i in range(10)]
    assert message_problems(embeds) == []
    assert validate_payload(payload(embeds)) is None


# ---------------------------------------------------------------------- planning


def _groups(n: int, regions: int = 1, name: str | None = None) -> list[AppChanges]:
    ccs = [f"{chr(97 + j // 26)}{chr(97 + j % 26)}" for j in range(regions)]
    return [
        AppChanges(
            app,
            name if name is not None else f"Game {app}",
            tuple(change(cc, event_id=f"e-{app}-{cc}", app_id=app) for cc in ccs),
        )
        for app in range(1, n + 1)
    ]


def test_rich_plan_takes_ten_apps_one_embed_each() -> None:
    plan = plan_message(_groups(23, regions=2), digest=False)
    assert plan.count == 10 and not plan.digest
    assert [e["url"] for e in plan.embeds] == [
        f"https://store.steampowered.com/app/{a}/" for a in range(1, 11)
    ]
    assert all(len(e["fields"]) == 2 for e in plan.embeds)


def test_rich_plan_never_puts_one_app_twice_in_a_message() -> None:
    # The same app twice (a price that moved twice) would be merged by Discord: next message.
    first, second = change("us", event_id="a"), change("us", event_id="b", new_final=1999)
    groups = group_by_app([first, second], {})
    assert [len(g.events) for g in groups] == [1, 1]
    assert plan_message(groups, digest=False).count == 1


def test_group_by_app_keeps_order_and_joins_regions() -> None:
    events = [
        change("us", event_id="1", app_id=7),
        change("us", event_id="2", app_id=8),
        change("gb", event_id="3", app_id=7),
    ]
    groups = group_by_app(events, {7: "Seven"})
    assert [(g.app_id, g.name, [e.cc for e in g.events]) for g in groups] == [
        (7, "Seven", ["us", "gb"]),
        (8, None, ["us"]),
    ]


def test_digest_packs_many_apps_per_message_within_limits() -> None:
    groups = _groups(200, regions=2)
    plan = plan_message(groups, digest=True)
    assert plan.digest and 30 <= plan.count <= 80
    assert message_problems(plan.embeds) == []
    assert validate_payload(payload(plan.embeds)) is None
    assert plan.embeds[0]["title"].startswith(f"Price changes · {plan.count} apps")
    assert "url" not in plan.embeds[0]  # no merging of digest embeds
    shown = changes_shown(plan.embeds)
    assert shown == [(g.app_id, cc) for g in groups[: plan.count] for cc in ("aa", "ab")]


def test_digest_line_links_the_store_page_and_escapes_the_name() -> None:
    line = digest_line(
        42,
        "Half-Life [Gold] *Edition*",
        [
            change("us", new_historical_low=True),
            change("gb", old_currency="GBP", new_currency="GBP"),
        ],
    )
    assert line.startswith(
        r"**[Half-Life \[Gold\] \*Edition\*](https://store.steampowered.com/app/42/)**"
    )
    assert "US $59.99 → **$29.99** (-50%) 🏆" in line
    assert "GB £59.99 → **£29.99** (-50%)" in line
    assert changes_shown([{"description": line}]) == [(42, "gb"), (42, "us")]


def test_digest_shows_unpriced_regions_plainly() -> None:
    line = digest_line(
        5, None, [change(kind="became_unpriced", new_status="no_price", new_final=None)]
    )
    assert line.endswith("· US *no price*")


@given(
    st.lists(
        st.tuples(
            st.text(min_size=0, max_size=300),
            st.integers(min_value=1, max_value=30),
            st.booleans(),
        ),
        min_size=1,
        max_size=60,
    ),
    st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_planning_a_backlog_shows_every_change_once_within_limits(
    apps: list[tuple[str, int, bool]], digest: bool
) -> None:
    groups = [
        AppChanges(
            i + 1,
            name or None,
            tuple(
                change(
                    f"{chr(97 + j // 26)}{chr(97 + j % 26)}",
                    event_id=f"{i}-{j}",
                    app_id=i + 1,
                    new_historical_low=low,
                )
                for j in range(regions)
            ),
        )
        for i, (name, regions, low) in enumerate(apps)
    ]
    rest, shown = groups, []
    while rest:
        plan = plan_message(rest, digest=digest)
        assert plan.count >= 1
        assert message_problems(plan.embeds) == []
        assert validate_payload(payload(plan.embeds)) is None
        shown.extend(changes_shown(plan.embeds))
        rest = rest[plan.count :]
    expected = [(g.app_id, e.cc) for g in groups for e in sorted(g.events, key=lambda e: e.cc)]
    if digest:
        # A digest line is clipped at 1000 units: an app in 30 regions may show fewer.
        assert set(shown) <= set(expected)
        assert {a for a, _ in shown} == {g.app_id for g in groups}
    else:
        assert set(shown) <= set(expected) and {a for a, _ in shown} == {g.app_id for g in groups}
        assert len(shown) == len(set(shown))


# ---------------------------------------------------------------------- answers


def test_v6_retry_after_is_in_milliseconds() -> None:
    body = b'{"message": "You are being rate limited.", "retry_after": 1500, "global": false}'
    assert classify_response(429, RL, body, api_version=6).wait == pytest.approx(1.5)
    assert classify_response(429, RL, body, api_version=7).wait == pytest.approx(1.5)
    assert classify_response(429, RL, body, api_version=10).wait == pytest.approx(1500)


def test_429_scope_and_lower_case_headers() -> None:
    headers = {"x-ratelimit-limit": "5", "x-ratelimit-scope": "shared", "retry-after": "41"}
    outcome = classify_response(429, headers, b'{"retry_after": 40.2, "global": false}')
    assert (outcome.action, outcome.scope, outcome.wait) == ("retry_after", "shared", 40.2)
    glob = classify_response(429, {"X-RateLimit-Global": "true"}, b'{"retry_after": 2}')
    assert glob.global_ and glob.scope == "global"


def test_absurd_waits_are_capped_and_flagged() -> None:
    outcome = classify_response(429, RL, b'{"retry_after": 864000}', max_wait=600)
    assert outcome.wait == 600 and outcome.capped


def test_429_without_a_body_falls_back_to_headers() -> None:
    outcome = classify_response(429, {"X-RateLimit-Reset-After": "2.5"}, b"")
    assert (outcome.action, outcome.wait) == ("retry_after", 2.5)


def test_cloudflare_ban_body_from_the_fake_is_a_ban() -> None:
    assert classify_response(429, {}, CLOUDFLARE_BODY.encode()).action == "ban"


@pytest.mark.parametrize(
    ("status", "body", "action"),
    [
        (403, b'{"message": "Missing Permissions", "code": 50013}', "disable"),
        (404, b'{"message": "404: Not Found", "code": 0}', "disable"),
        (413, b"", "reject"),
        (408, b"", "backoff"),
        (500, b'{"message": "500: Internal Server Error", "code": 0}', "backoff"),
        (503, b"upstream connect error", "backoff"),
    ],
)
def test_other_answers(status: int, body: bytes, action: str) -> None:
    assert classify_response(status, {}, body).action == action


def test_webhook_remembers_the_pasted_version_and_has_a_secret_free_key() -> None:
    hook = parse_webhook_url("https://discord.com/api/webhooks/123/tok-secret")
    assert hook.pasted_version == 6 and hook.api_version == 10
    assert parse_webhook_url("https://discord.com/api/v9/webhooks/1/t").pasted_version == 9
    assert "tok-secret" not in hook.key + repr(hook)
    assert hook.key != parse_webhook_url("https://discord.com/api/webhooks/123/other").key
