"""parse_seed under fuzzing: any input is an app id or a BadSeed, never another exception.

The integration twin (tests/integration/test_faults_input.py) sends such input through a real
worker; this one searches the input space quickly. Deep nesting once escaped as RecursionError.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steamprice.schedule import MAX_APP_ID, BadSeed, parse_seed

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


def accepted_or_refused(raw: bytes) -> None:
    try:
        app_id = parse_seed(raw)
    except BadSeed as exc:
        assert str(exc)  # a reason, always
    else:
        assert 1 <= app_id <= MAX_APP_ID


@settings(max_examples=400)
@given(st.binary(max_size=1100))
def test_any_bytes(raw: bytes) -> None:
    accepted_or_refused(raw)


@settings(max_examples=400)
@given(JSON_VALUES)
def test_any_json_value(value: object) -> None:
    accepted_or_refused(json.dumps(value).encode())
    accepted_or_refused(json.dumps({"app_id": value}).encode())


@pytest.mark.parametrize("depth", [500, 999, 1000, 1023])
@pytest.mark.parametrize("brackets", [("[", "]"), ("[", "")])
def test_nesting_deeper_than_the_parser_allows_is_a_bad_seed(
    depth: int, brackets: tuple[str, str]
) -> None:
    opener, closer = brackets
    with pytest.raises(BadSeed):
        parse_seed((opener * depth + closer * depth).encode()[:1024])
