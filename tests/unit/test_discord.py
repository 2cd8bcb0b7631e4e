"""Embeds, Discord's limits, webhook URLs and the meaning of each webhook answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from steamprice.discord import (
    MAX_TOTAL_CHARS,
    WebhookUrlError,
    build_embed,
    classify_response,
    embed_chars,
    format_price,
    pack_messages,
    parse_webhook_url,
    payload,
)
from steamprice.models import PriceChange

T = datetime(2025, 8, 18, 17, 0, tzinfo=UTC)


def change(cc: str = "us", kind: str = "discount_started", **kw: object) -> PriceChange:
    fields: dict[str, object] = {
        "event_id": f"e-{cc}-{kind}",
        "app_id": 1091500,
        "cc": cc,
        "kind": kind,
        "old_status": "priced",
        "new_status": "priced",
        "old_currency": "USD",
        "new_currency": "USD",
        "old_initial": 5999,
        "old_final": 5999,
        "old_discount": 0,
        "new_initial": 5999,
        "new_final": 2999,
        "new_discount": 50,
        "observed_at": T,
        "previous_observed_at": T,
    }
    fields.update(kw)
    return PriceChange(**fields)


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
    assert embed["timestamp"] == T.isoformat()


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
