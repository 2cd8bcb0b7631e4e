"""SteamSpy answers -> apps rows: descriptive fields only, never prices."""

from __future__ import annotations

import json

import pytest

from steamprice.steamspy import (
    MAX_TAGS,
    UPSERT_APP_DETAILS,
    SpyError,
    details_row,
    parse_details,
)
from tests.support.shared import require_shared_data

SAMPLE = "api-samples/steamspy_appdetails_1462040.example.json"

FF7 = {
    "appid": 1462040,
    "name": "FINAL FANTASY VII REMAKE INTERGRADE",
    "developer": "Square Enix",
    "publisher": "Square Enix",
    "owners": "1,000,000 .. 2,000,000",
    "price": "1399",
    "initialprice": "3999",
    "discount": "65",
    "ccu": 761,
    "tags": {"RPG": 385, "Action RPG": 350, "JRPG": 347},
}


def test_a_known_app_gives_its_descriptive_fields() -> None:
    details = parse_details(1462040, json.dumps(FF7).encode())
    assert details.known
    assert details.name == "FINAL FANTASY VII REMAKE INTERGRADE"
    assert (details.developer, details.publisher) == ("Square Enix", "Square Enix")
    assert details.owners == "1,000,000 .. 2,000,000" and details.ccu == 761
    assert details.tags == {"RPG": 385, "Action RPG": 350, "JRPG": 347}


def test_the_recorded_sample_parses() -> None:
    sample = require_shared_data(SAMPLE) / SAMPLE
    details = parse_details(1462040, sample.read_bytes())
    assert details.known and details.tags is not None and len(details.tags) == 20


def test_prices_are_never_taken_from_steamspy() -> None:
    details = parse_details(1462040, json.dumps(FF7).encode())
    row = details_row(details)
    # No price, initial price or discount anywhere in what is written.
    assert all(v not in ("1399", "3999", "65", 1399, 3999, 65) for v in row)
    assert "price" not in UPSERT_APP_DETAILS.replace("app_id", "")


def test_an_app_steamspy_does_not_know_is_marked_without_erasing_anything() -> None:
    unknown = {"appid": 999999, "name": None, "developer": "", "owners": "0 .. 20,000", "tags": []}
    details = parse_details(999999, json.dumps(unknown).encode())
    assert not details.known
    row = details_row(details)
    # NULLs keep what is known (COALESCE); tags "{}" marks the app as asked.
    assert row == (999999, None, None, None, None, None, "{}")
    assert "COALESCE(VALUES(name), name)" in UPSERT_APP_DETAILS


def test_odd_values_are_cleaned_not_trusted() -> None:
    odd = {
        "name": "  x" * 400,
        "developer": 5,
        "owners": "1" * 100,
        "ccu": "42",
        "tags": {"Good": 10, "": 5, "Bad": "many", "Neg": -1, **{f"t{i}": i for i in range(60)}},
    }
    details = parse_details(1, json.dumps(odd).encode())
    assert details.name is not None and len(details.name) == 512
    assert details.developer is None and details.owners is not None and len(details.owners) == 64
    assert details.ccu == 42
    assert details.tags is not None and len(details.tags) == MAX_TAGS
    assert "" not in details.tags and "Bad" not in details.tags and "Neg" not in details.tags
    assert next(iter(details.tags)) == "t59"  # most votes first


@pytest.mark.parametrize("body", [b"<html>429</html>", b"[1,2]", b"\xff\xfe", b"null"])
def test_unusable_answers_raise(body: bytes) -> None:
    with pytest.raises(SpyError):
        parse_details(1, body)
