"""GetItems answers under fuzzing: any body is items or a StoreError, any item an outcome.

Never a crash on any shape: whole bodies of random bytes and random JSON, and the shared doc's
discounted item with random values put at every level (the odd shapes a protobuf-to-JSON
service can produce: strings for numbers, missing fields, nulls, nesting).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from steamprice.enddates import (
    KNOWN,
    OUTCOMES,
    EndDate,
    Offer,
    end_date,
    end_dates,
    split_getitems,
)
from steamprice.steam import StoreError

NOW = datetime(2024, 12, 12, 12, 0, tzinfo=UTC)
OFFER = Offer(1220150, 1999, 499)
IDS = [1220150, 9999999, 570]

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["499", "1999", "1500", "1734544800", "0", "-1", "1e3", "١٢"])
    # End dates past what a datetime holds, and past uint32.
    | st.sampled_from([2**32 + 1, 2**40, 10**20, 253402300800, "99999999999999999999"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)

DOC_ITEM: dict[str, Any] = {
    "item_type": 0,
    "id": 1220150,
    "success": 1,
    "visible": True,
    "name": "Blue Fire",
    "appid": 1220150,
    "type": 0,
    "best_purchase_option": {
        "packageid": 422570,
        "final_price_in_cents": "499",
        "original_price_in_cents": "1999",
        "discount_pct": 75,
        "active_discounts": [
            {
                "discount_amount": "1500",
                "discount_description": "#discount_desc_preset_special",
                "discount_end_date": 1734544800,
            }
        ],
    },
}
ITEM_KEYS = [*DOC_ITEM, "is_free", "unvailable_for_country_restriction"]
OPTION_KEYS = [*DOC_ITEM["best_purchase_option"], "bundleid"]
DISCOUNT_KEYS = ["discount_amount", "discount_end_date"]


def checked(result: EndDate) -> None:
    assert result.outcome in OUTCOMES
    assert (result.ends_at is not None) == (result.outcome == KNOWN)
    if result.ends_at is not None:
        assert result.ends_at > NOW and result.ends_at.tzinfo is not None


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_any_bytes(raw: bytes) -> None:
    try:
        items = split_getitems(200, raw, "1", IDS)
    except StoreError as exc:
        assert exc.kind == "malformed"
    else:
        assert set(items) <= set(IDS)


@settings(max_examples=300)
@given(JSON_VALUES)
def test_any_json_body_and_any_item(value: Any) -> None:
    for doc in (value, {"response": value}, {"response": {"store_items": value}}):
        try:
            items = split_getitems(200, json.dumps(doc).encode(), "1", IDS)
        except StoreError as exc:
            assert exc.kind == "malformed"
        else:
            assert set(items) <= set(IDS)
            for result in end_dates(items, [Offer(a, 1999, 499) for a in IDS], NOW):
                checked(result)
    checked(end_date(value, OFFER, NOW))


@settings(max_examples=500)
@given(
    st.dictionaries(st.sampled_from(ITEM_KEYS), JSON_VALUES, max_size=3),
    st.dictionaries(st.sampled_from(OPTION_KEYS), JSON_VALUES, max_size=3),
    st.dictionaries(st.sampled_from(DISCOUNT_KEYS), JSON_VALUES, max_size=2),
    st.lists(JSON_VALUES, max_size=2),
)
def test_the_docs_item_with_odd_values_anywhere(
    item_changes: dict[str, Any],
    option_changes: dict[str, Any],
    discount_changes: dict[str, Any],
    extra_discounts: list[Any],
) -> None:
    item = json.loads(json.dumps(DOC_ITEM))
    option = item["best_purchase_option"]
    option["active_discounts"][0].update(discount_changes)
    option["active_discounts"].extend(extra_discounts)
    option.update(option_changes)
    item.update(item_changes)
    result = end_date(item, OFFER, NOW)
    checked(result)
    if result.outcome == KNOWN:
        # Only ever the end of a discount whose prices are appdetails' own.
        option = item["best_purchase_option"]
        assert option["final_price_in_cents"] in ("499", 499)
        assert option["original_price_in_cents"] in ("1999", 1999)
