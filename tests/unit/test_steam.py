"""Parsing every documented shape of the Steam store and Web API answers."""

from __future__ import annotations

import json

import pytest

from steamprice.steam import (
    NO_PRICE,
    PRICED,
    UNKNOWN,
    AppListEntry,
    StoreError,
    app_list_params,
    appdetails_params,
    parse_app_list,
    parse_entry,
    split_appdetails,
)

# The shapes of steam-api.md: a priced app (PHP), data [] for a free app, success:false.
BATCH = (
    b'{"292030":{"success":true,"data":{"price_overview":{"currency":"PHP","initial":209900,'
    b'"final":209900,"discount_percent":0,"initial_formatted":"","final_formatted":"P2,099.00"}}},'
    b'"440":{"success":true,"data":[]},"999999999":{"success":false}}'
)


def test_batched_request_uses_exactly_the_price_filter() -> None:
    params = appdetails_params([10, 20, 30], "ph")
    assert params == {"appids": "10,20,30", "filters": "price_overview", "cc": "ph", "l": "english"}


def test_split_returns_each_requested_entry_and_fills_missing_ids() -> None:
    entries = split_appdetails(200, BATCH, [292030, 440, 999999999, 5])
    assert parse_entry(entries[292030]).final == 209900
    assert parse_entry(entries[440]).status == NO_PRICE
    assert parse_entry(entries[999999999]).status == UNKNOWN
    assert parse_entry(entries[5]).status == UNKNOWN  # absent from the answer


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, b"null", "rate_limited"),
        (403, b"<html><body>Access Denied</body></html>", "banned"),
        (400, b"null", "bad_batch"),
        (502, b"<html>Bad gateway</html>", "server"),
        (404, b"", "http"),
        (200, b'{"10":{"success":true,"data":{"price_ov', "malformed"),
        (200, b"<html>maintenance</html>", "malformed"),
        (200, b"null", "malformed"),
        (200, b"[1,2]", "malformed"),
    ],
)
def test_status_is_checked_before_the_body_is_trusted(status: int, body: bytes, kind: str) -> None:
    with pytest.raises(StoreError) as err:
        split_appdetails(status, body, [10])
    assert err.value.kind == kind


def test_retryable_kinds() -> None:
    assert StoreError("server", "x").retryable
    assert StoreError("malformed", "x").retryable
    assert not StoreError("rate_limited", "x").retryable
    assert not StoreError("bad_batch", "x").retryable


def test_priced_entry_keeps_x100_units_in_every_currency() -> None:
    jpy = (
        '{"success":true,"data":{"price_overview":{"currency":"JPY","initial":968000,'
        '"final":968000,"discount_percent":0,"initial_formatted":"","final_formatted":"¥ 9,680"}}}'
    )
    parsed = parse_entry(jpy)
    assert (parsed.status, parsed.currency, parsed.initial, parsed.final) == (
        PRICED,
        "JPY",
        968000,
        968000,
    )
    assert parsed.discount_percent == 0


def test_discounted_entry() -> None:
    entry = {
        "success": True,
        "data": {
            "price_overview": {
                "currency": "PHP",
                "initial": 339900,
                "final": 84975,
                "discount_percent": 75,
                "initial_formatted": "P3,399.00",
                "final_formatted": "P849.75",
            }
        },
    }
    parsed = parse_entry(json.dumps(entry))
    assert (parsed.initial, parsed.final, parsed.discount_percent) == (339900, 84975, 75)


@pytest.mark.parametrize(
    ("entry", "status"),
    [
        ('{"success":true,"data":[]}', NO_PRICE),
        ('{"success":true,"data":{}}', NO_PRICE),
        ('{"success":true}', NO_PRICE),
        ('{"success":true,"data":{"name":"Dota 2","is_free":true}}', NO_PRICE),
        ('{"success":false}', UNKNOWN),
        ('{"success":"yes","data":[]}', UNKNOWN),
        ('{"success":true,"data":"oops"}', UNKNOWN),
        ('{"success":true,"data":{"price_overview":[]}}', UNKNOWN),
        ('{"success":true,"data":{"price_overview":{"currency":"USD","final":999}}}', UNKNOWN),
        (
            '{"success":true,"data":{"price_overview":{"currency":"USD","initial":"9","final":9}}}',
            UNKNOWN,
        ),
        (
            '{"success":true,"data":{"price_overview":{"currency":"USD","initial":999,"final":-1}}}',
            UNKNOWN,
        ),
        ("[]", UNKNOWN),
        ("not json", UNKNOWN),
    ],
)
def test_odd_entries_never_raise(entry: str, status: str) -> None:
    assert parse_entry(entry).status == status


def test_odd_entries_say_what_was_odd() -> None:
    assert parse_entry('{"success":true,"data":"oops"}').problem
    assert parse_entry('{"success":true,"data":[]}').problem == ""


def test_json_that_only_pythons_reader_accepts_is_read_as_it_reads_it() -> None:
    # NaN is not JSON, yet Steam's body parsed; the entry's fault is its price, not its syntax.
    nan = '{"success":true,"data":{"price_overview":{"currency":"USD","initial":NaN,"final":1}}}'
    assert parse_entry(nan).problem == "price_overview lacks currency/initial/final"
    assert parse_entry('{"success":true,').problem == "entry is not JSON"


def test_app_list_pages() -> None:
    first = json.dumps(
        {
            "response": {
                "apps": [
                    {
                        "appid": 10,
                        "name": "Counter-Strike",
                        "last_modified": 1602535893,
                        "price_change_number": 15351989,
                    },
                    {
                        "appid": 20,
                        "name": "Team Fortress Classic",
                        "last_modified": 1579634708,
                        "price_change_number": 15351989,
                    },
                ],
                "have_more_results": True,
                "last_appid": 20,
            }
        },
        indent=2,
    ).encode()
    page = parse_app_list(200, first)
    assert page.apps == [
        AppListEntry(10, "Counter-Strike", 1602535893, 15351989),
        AppListEntry(20, "Team Fortress Classic", 1579634708, 15351989),
    ]
    assert page.last_appid == 20
    last = b'{"response":{"apps":[{"appid":2156880,"name":"x","last_modified":1,"price_change_number":0}]}}'
    assert parse_app_list(200, last).last_appid is None


def test_app_list_without_key_is_a_clear_error() -> None:
    with pytest.raises(StoreError) as err:
        parse_app_list(403, b"<html>Forbidden</html>")
    assert "STEAM_API_KEY" in str(err.value)
    with pytest.raises(StoreError):
        parse_app_list(200, b'{"nothing":1}')


def test_app_list_tolerates_empty_pages_odd_entries_and_a_missing_cursor() -> None:
    # protobuf omits empty fields: a page without apps is {"response":{}}.
    empty = parse_app_list(200, b'{"response":{}}')
    assert empty.apps == [] and empty.last_appid is None
    odd = parse_app_list(
        200,
        b'{"response":{"apps":[{"appid":"x"},{"name":"no id"},5,{"appid":-3},'
        b'{"appid":30}],"have_more_results":true}}',
    )
    assert [a.app_id for a in odd.apps] == [30] and odd.skipped == 4
    assert odd.apps[0] == AppListEntry(30, "", 0, 0)
    # "more" without last_appid: continue after the last app seen rather than stop or loop.
    assert odd.last_appid == 30


def test_app_list_params_name_every_type_and_the_change_window() -> None:
    params = app_list_params("k", 496120, types=("game", "dlc"), if_modified_since=1700000000)
    assert params == {
        "key": "k",
        "max_results": "50000",
        "last_appid": "496120",
        "include_games": "true",
        "include_dlc": "true",
        "include_software": "false",
        "include_videos": "false",
        "include_hardware": "false",
        "if_modified_since": "1700000000",
    }
    assert "if_modified_since" not in app_list_params("k")


def test_a_cut_json_object_is_told_apart_from_an_html_page() -> None:
    with pytest.raises(StoreError) as cut:
        split_appdetails(200, b'{"10":{"success":true,"da', [10])
    assert cut.value.kind == "malformed" and cut.value.broken_object
    with pytest.raises(StoreError) as page:
        split_appdetails(200, b"<html><body>Sorry!</body></html>", [10])
    assert page.value.kind == "malformed" and not page.value.broken_object


def test_one_odd_entry_never_spoils_the_batch() -> None:
    body = (
        b'{"10":{"success":true,"data":"oops"},"20":{"success":true,"data":[]},'
        b'"30":{"success":true,"data":{"price_overview":{"currency":"USD","initial":999,'
        b'"final":499,"discount_percent":50}}},"40":{"success":false},"50":null}'
    )
    entries = split_appdetails(200, body, [10, 20, 30, 40, 50])
    parsed = {a: parse_entry(e) for a, e in entries.items()}
    assert parsed[10].status == UNKNOWN and parsed[10].problem
    assert parsed[20].status == NO_PRICE
    assert (parsed[30].status, parsed[30].final) == (PRICED, 499)
    assert parsed[40].status == UNKNOWN and parsed[50].status == UNKNOWN


def test_entries_read_back_as_steam_sent_them_whatever_the_json_reader() -> None:
    # orjson reads the answer; what it refuses (NaN, integers past 64 bits) Python's json reads,
    # and the entry keeps it: the odd value still reaches parse_entry, as before.
    priced = {"currency": "EUR", "initial": 1299, "final": 999, "discount_percent": 23}
    answer = {"10": {"success": True, "data": {"price_overview": {**priced, "x": "12,99€"}}}}
    body = json.dumps(answer, ensure_ascii=False).encode()
    entries = split_appdetails(200, body, [10])
    assert json.loads(entries[10]) == answer["10"]
    assert parse_entry(entries[10]).final == 999
    odd = b'{"10":{"success":true,"data":{"price_overview":{"currency":"USD","initial":NaN,'
    odd += b'"final":1,"discount_percent":0}}},"20":{"success":true,"data":{"id":18446744073709551616}}}'
    entries = split_appdetails(200, odd, [10, 20])
    assert '"initial":NaN' in entries[10] and parse_entry(entries[10]).status == UNKNOWN
    assert "18446744073709551616" in entries[20]
