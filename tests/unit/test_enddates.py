"""The pure end-date rules: GetItems request and URL packing, answer checks, item matching,
each documented outcome, and when an end date is asked."""

from __future__ import annotations

import copy
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from steamprice import enddates
from steamprice.enddates import (
    Ask,
    Asked,
    BadAsks,
    EndDate,
    Offer,
    asks_record,
    discounted_offer,
    end_date,
    end_dates,
    getitems_url,
    input_json,
    match_items,
    needs_end_date,
    pack,
    read_asks,
    split_getitems,
)
from steamprice.steam import StoreError
from tests.support.steam_doc import blue_fire_item

BASE = "https://api.steampowered.com"
NOW = datetime(2024, 12, 12, 12, 0, tzinfo=UTC)
END = 1734544800  # 2024-12-18 18:00 UTC
OFFER = Offer(1220150, 1999, 499)


def changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied (None removes a key)."""
    for key, value in changes.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def item(**changes: Any) -> dict[str, Any]:
    """The shared doc's discounted game, with ``changes`` applied (None removes a key)."""
    return changed(blue_fire_item(), changes)


def option(**changes: Any) -> dict[str, Any]:
    """The purchase option of :func:`item`, with ``changes`` applied (None removes a key)."""
    return changed(copy.deepcopy(item()["best_purchase_option"]), changes)


# ---------------------------------------------------------------------------- outcomes


def test_the_docs_discounted_game_gives_its_end_date() -> None:
    result = end_date(item(), OFFER, NOW)
    assert result == EndDate(
        1220150, enddates.KNOWN, datetime(2024, 12, 18, 18, 0, tzinfo=UTC), package_id=422570
    )


@pytest.mark.parametrize(
    ("the_item", "outcome"),
    [
        # Unknown, removed or hidden: the doc's shape.
        (
            {
                "item_type": 0,
                "id": 1220150,
                "success": 15,
                "visible": False,
                "name": "",
                "store_url_path": "app/0/",
                "appid": 0,
            },
            enddates.NOT_FOUND,
        ),
        (
            {
                "item_type": 0,
                "id": 1220150,
                "success": 15,
                "visible": False,
                "unvailable_for_country_restriction": True,
                "appid": 0,
            },
            enddates.REGION_RESTRICTED,
        ),
        (item(success=None), enddates.NOT_FOUND),  # unset = 0
        (item(success="1", visible=None), enddates.HIDDEN),
        (item(best_purchase_option=None, is_free=True), enddates.FREE),
        (item(best_purchase_option=None), enddates.NO_PURCHASE_OPTION),
        (item(best_purchase_option=[]), enddates.MALFORMED),
        ("not an item", enddates.MALFORMED),
        (None, enddates.MALFORMED),
    ],
)
def test_items_without_a_usable_option(the_item: Any, outcome: str) -> None:
    result = end_date(the_item, OFFER, NOW)
    assert result.outcome == outcome and result.ends_at is None


@pytest.mark.parametrize(
    ("the_option", "outcome"),
    [
        # The sale ended between the appdetails answer and this one.
        (
            option(
                original_price_in_cents=None,
                discount_pct=None,
                active_discounts=None,
                final_price_in_cents="1999",
            ),
            enddates.NOT_DISCOUNTED,
        ),
        # Another package: a cheaper edition on sale, or the same game at another discount.
        (option(final_price_in_cents="399"), enddates.OTHER_OFFER),
        (option(original_price_in_cents="2999"), enddates.OTHER_OFFER),
        (option(packageid=None, bundleid=2345), enddates.OTHER_OFFER),
        (option(final_price_in_cents=None), enddates.MALFORMED),
        (option(final_price_in_cents="4.99"), enddates.MALFORMED),
        (option(original_price_in_cents=True), enddates.MALFORMED),
        (option(active_discounts=None), enddates.NO_END_DATE),
        (option(active_discounts=[]), enddates.NO_END_DATE),
        (option(active_discounts={"discount_end_date": END}), enddates.MALFORMED),
        (option(active_discounts=[7]), enddates.MALFORMED),
        (option(active_discounts=[{"discount_amount": "1500"}]), enddates.NO_END_DATE),
        (option(active_discounts=[{"discount_end_date": 0}]), enddates.NO_END_DATE),
        (option(active_discounts=[{"discount_end_date": "soon"}]), enddates.BAD_END_DATE),
        (option(active_discounts=[{"discount_end_date": -5}]), enddates.BAD_END_DATE),
        (option(active_discounts=[{"discount_end_date": 10**30}]), enddates.BAD_END_DATE),
        # Already over, or absurdly far away.
        (option(active_discounts=[{"discount_end_date": END - 7 * 86400}]), enddates.BAD_END_DATE),
        (
            option(active_discounts=[{"discount_end_date": END + 400 * 86400}]),
            enddates.BAD_END_DATE,
        ),
    ],
)
def test_purchase_options_that_give_no_end(the_option: Any, outcome: str) -> None:
    result = end_date(item(best_purchase_option=the_option), OFFER, NOW)
    assert result.outcome == outcome, result
    assert result.ends_at is None


def test_an_end_date_as_a_string_is_read_like_any_int64() -> None:
    the_option = option(
        active_discounts=[{"discount_amount": "1500", "discount_end_date": str(END)}]
    )
    result = end_date(item(best_purchase_option=the_option), OFFER, NOW)
    assert result.ends_at == datetime.fromtimestamp(END, UTC)


def test_several_discounts_pick_the_one_that_is_the_whole_cut() -> None:
    stacked = [
        {"discount_amount": "500", "discount_end_date": END - 86400},
        {"discount_amount": "1500", "discount_end_date": END},
        "noise",
    ]
    result = end_date(item(best_purchase_option=option(active_discounts=stacked)), OFFER, NOW)
    assert result.outcome == enddates.KNOWN
    assert result.ends_at == datetime.fromtimestamp(END, UTC)


@pytest.mark.parametrize(
    "discounts",
    [
        # Two partial discounts that add up: which ends first is not ours to guess.
        [
            {"discount_amount": "1000", "discount_end_date": END},
            {"discount_amount": "500", "discount_end_date": END + 86400},
        ],
        # Two whole-cut entries that disagree on the end.
        [
            {"discount_amount": "1500", "discount_end_date": END},
            {"discount_amount": "1500", "discount_end_date": END + 86400},
        ],
        # Amounts missing: nothing to choose by.
        [{"discount_end_date": END}, {"discount_end_date": END + 86400}],
    ],
)
def test_several_discounts_without_one_match_are_ambiguous(discounts: list[Any]) -> None:
    result = end_date(item(best_purchase_option=option(active_discounts=discounts)), OFFER, NOW)
    assert result.outcome == enddates.AMBIGUOUS and result.ends_at is None


def test_several_whole_cut_entries_that_agree_are_fine() -> None:
    same = [
        {"discount_amount": "1500", "discount_end_date": END},
        {"discount_amount": "1500", "discount_end_date": END},
    ]
    result = end_date(item(best_purchase_option=option(active_discounts=same)), OFFER, NOW)
    assert result.outcome == enddates.KNOWN


def test_end_dates_of_many_offers_mark_missing_items_not_found() -> None:
    other = Offer(20, 999, 499)
    results = end_dates({1220150: item()}, [OFFER, other], NOW)
    assert [(r.app_id, r.outcome) for r in results] == [
        (1220150, enddates.KNOWN),
        (20, enddates.NOT_FOUND),
    ]


@pytest.mark.parametrize(
    ("initial", "final", "discount", "offer"),
    [
        (1999, 499, 75, Offer(7, 1999, 499)),
        (1999, 1999, 0, None),
        (0, 0, 100, None),  # free-to-keep oddity: no real cut
        (999, 999, 50, None),
        (None, None, None, None),
    ],
)
def test_only_real_discounts_are_asked_about(
    initial: int | None, final: int | None, discount: int | None, offer: Offer | None
) -> None:
    assert discounted_offer(7, initial, final, discount) == offer


# ---------------------------------------------------------------------------- request


def test_request_message_and_url() -> None:
    assert input_json([440, 730], "de") == (
        '{"ids":[{"appid":440},{"appid":730}],"context":{"language":"english","country_code":"DE"}}'
    )
    url = getitems_url(BASE + "/", [440], "us")
    parts = urlsplit(str(url))
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://api.steampowered.com/IStoreBrowseService/GetItems/v1/"
    )
    assert json.loads(parse_qs(parts.query)["input_json"][0])["ids"] == [{"appid": 440}]


def test_batches_are_as_large_as_the_url_allows() -> None:
    ids = list(range(3_000_000, 3_001_000))
    batches = pack(BASE, ids, "us")
    # Valve's 250 fit easily with seven-digit ids.
    assert [len(b) for b in batches] == [250, 250, 250, 250]
    assert [a for b in batches for a in b] == ids

    roomy = pack(BASE, ids, "us", max_ids=1000)
    lengths = [len(str(getitems_url(BASE, b, "us"))) for b in roomy]
    assert all(n <= 8_000 for n in lengths)
    # As large as allowed: one more id would not have fit.
    for batch, following in itertools.pairwise(roomy):
        assert len(str(getitems_url(BASE, [*batch, following[0]], "us"))) > 8_000
    assert [a for b in roomy for a in b] == ids

    tight = pack(BASE, ids[:50], "us", max_url_chars=1_000)
    assert all(len(str(getitems_url(BASE, b, "us"))) <= 1_000 for b in tight)
    assert len(tight) > 1 and sum(map(len, tight)) == 50
    assert pack(BASE, [], "us") == []
    # Even a limit no id fits under sends each id alone rather than nothing.
    assert pack(BASE, [1, 2], "us", max_url_chars=10) == [[1], [2]]


# ---------------------------------------------------------------------------- answer


def body(items: list[Any] | None) -> bytes:
    response = {} if items is None else {"store_items": items}
    return json.dumps({"response": response}, indent=2).encode()


def test_answer_matched_by_id_whatever_the_order() -> None:
    unknown = {"item_type": 0, "id": 9, "success": 15, "visible": False, "appid": 0}
    answer = body([item(id=20, appid=20), unknown, item()])
    matched = split_getitems(200, answer, "1", [1220150, 9, 20])
    assert set(matched) == {1220150, 9, 20}
    assert matched[9] == unknown and matched[20]["id"] == 20


def test_items_without_ids_are_matched_by_position_only_when_none_is_missing() -> None:
    anonymous = {"item_type": 0, "id": 0, "success": 15, "appid": 0}
    assert match_items([item(), anonymous], [1220150, 5]) == {1220150: item(), 5: anonymous}
    # One item short: positions are meaningless, the anonymous item is dropped.
    assert match_items([anonymous], [1220150, 5]) == {}
    # Unknown ids left out: the rest still match by id.
    assert match_items([item()], [5, 1220150, 6]) == {1220150: item()}
    # Items for ids not asked, duplicates and junk are ignored.
    assert match_items([item(id=77, appid=77), item(), item(), "junk"], [1220150]) == {
        1220150: item()
    }
    assert split_getitems(200, body(None), "1", [1, 2]) == {}


@pytest.mark.parametrize(
    ("status", "eresult", "kind"),
    [
        (429, "84", "rate_limited"),
        (429, None, "rate_limited"),
        (200, "84", "rate_limited"),  # a Web API limit on an otherwise empty answer
        (200, " 25", "rate_limited"),
        (403, None, "banned"),
        (400, None, "bad_batch"),
        (500, None, "server"),
        (503, "20", "server"),
        (404, None, "http"),
        (200, "2", "server"),  # a failure result with a 200
    ],
)
def test_status_and_eresult_are_checked_before_the_body(
    status: int, eresult: str | None, kind: str
) -> None:
    with pytest.raises(StoreError) as caught:
        split_getitems(status, body([item()]), eresult, [1220150])
    assert caught.value.kind == kind


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"null",
        b"[]",
        b'{"response": []}',
        b'{"response": {"store_items": {}}}',
        b'{"resp',
        b"<html>Error</html>",
        b"\xff\xfe",
        b"[" * 100_000,
    ],
)
def test_broken_bodies_are_malformed(raw: bytes) -> None:
    with pytest.raises(StoreError) as caught:
        split_getitems(200, raw, "1", [1])
    assert caught.value.kind == "malformed" and caught.value.retryable


# ---------------------------------------------------------------------------- when to ask

RESWEEP = timedelta(hours=5, minutes=24)  # 0.9 x the default 6-hour interval
T0 = datetime(2024, 12, 12, tzinfo=UTC)


def ask(
    final: int = 499,
    since: datetime = T0,
    at: datetime = T0,
    obs_id: str = "obs-1",
    reseeded: bool = False,
) -> Ask:
    return Ask(1220150, "us", 1999, final, since, at, obs_id, reseeded)


def asked(
    final: int = 499, since: datetime = T0, at: datetime = T0, obs_id: str = "obs-1"
) -> Asked:
    return Asked(1999, final, since, at, obs_id)


def test_a_new_discount_is_asked_at_once() -> None:
    assert needs_end_date(None, ask(), resweep=RESWEEP)
    # A changed discount (deeper cut) is a new question, however soon.
    later = T0 + timedelta(minutes=5)
    assert needs_end_date(asked(), ask(299, since=later, at=later, obs_id="obs-2"), resweep=RESWEEP)
    # The same prices first observed at another time are another discount (a sale a month later).
    month = T0 + timedelta(days=30)
    assert needs_end_date(asked(), ask(since=month, at=month, obs_id="obs-9"), resweep=RESWEEP)


def test_a_stale_ask_about_an_older_discount_is_dropped() -> None:
    newer = asked(299, since=T0 + timedelta(hours=1), at=T0 + timedelta(hours=1), obs_id="obs-2")
    assert not needs_end_date(newer, ask(at=T0 + timedelta(hours=9)), resweep=RESWEEP)


def test_the_same_discount_is_asked_once_per_sweep() -> None:
    last = asked()
    # Redelivery of the observation that asked.
    assert not needs_end_date(last, ask(), resweep=RESWEEP)
    assert not needs_end_date(last, ask(at=T0 + RESWEEP * 3), resweep=RESWEEP)
    # An early re-price between sweeps (a moved price_change_number, a retried failure).
    early = ask(at=T0 + timedelta(hours=1), obs_id="obs-2")
    assert not needs_end_date(last, early, resweep=RESWEEP)
    # The next sweep: the app's scheduled re-price comes round (interval minus its offset).
    sweep = ask(at=T0 + timedelta(hours=6) - timedelta(minutes=18), obs_id="obs-3")
    assert needs_end_date(last, sweep, resweep=RESWEEP)


def test_a_reseed_asks_again_but_its_redelivery_does_not() -> None:
    soon = T0 + timedelta(minutes=2)
    assert needs_end_date(asked(), ask(at=soon, obs_id="obs-2", reseeded=True), resweep=RESWEEP)
    after = asked(at=soon, obs_id="obs-2")
    assert not needs_end_date(after, ask(at=soon, obs_id="obs-2", reseeded=True), resweep=RESWEEP)


def test_asks_records_round_trip_and_refuse_garbage() -> None:
    asks = [ask(), ask(299, since=T0 + timedelta(hours=1), obs_id="obs-2", reseeded=True)]
    record = json.loads(json.dumps(asks_record("us", asks)))
    assert read_asks(record) == asks
    assert record["asks"][0] == [
        1220150,
        1999,
        499,
        "2024-12-12T00:00:00+00:00",
        "2024-12-12T00:00:00+00:00",
        "obs-1",
        False,
    ]
    for bad in (
        None,
        [],
        {"cc": "us"},
        {"cc": "usa", "asks": []},
        {"cc": "us", "asks": [[1, 2, 3]]},
        {"cc": "us", "asks": [[1, 2, 3, "not a time", T0.isoformat(), "o", False]]},
        {"cc": "us", "asks": [[-1, 2, 3, T0.isoformat(), T0.isoformat(), "o", False]]},
        {"cc": "us", "asks": [[True, 2, 3, T0.isoformat(), T0.isoformat(), "o", False]]},
    ):
        with pytest.raises(BadAsks):
            read_asks(bad)
