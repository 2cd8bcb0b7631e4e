"""Thousands of malformed seed messages, sent raw to the seed topic among valid ones.

A seeded generator draws every kind of garbage a producer can put on ``app-ids`` -- text,
floats, negatives, zero, huge integers, nested and deeply nested JSON, invalid UTF-8, empty
messages and tombstones, oversized payloads -- and knows, independently of the pipeline, why
each one must be refused. None may crash or stall the worker: each must land on
``app-ids-failed`` with that reason and its raw text, be counted, and the valid seeds sent among
them must be priced.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.support.catalog import Catalog, current_rows
from tests.support.checks import metric, mismatches, wait_until_right
from tests.support.fakes import FakeDiscord, FakeSteam
from tests.support.faults import FaultRun
from tests.support.infra import produce_raw, wait_for

GARBAGE = 5000
VALID_APPS = range(50_000, 50_200)
CANARY = 50_999  # seeded after the flood: priced only if the intake still keeps up
MAX_ID = 2**31 - 1
NOT_JSON = 'not JSON: expected 730 or {"app_id": 730}'

# (value, the reason the pipeline must give); value None is a tombstone.
Bad = tuple[bytes | None, str]


def _not_int(kind: str) -> str:
    return f"app_id must be an integer, not {kind}"


def _words(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz  ,.;:!?é€漢字🙂\t"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))).strip() or "x"


def _text(rng: random.Random) -> Bad:
    text = rng.choice([_words(rng), "hello", "730 731", "0x2da", "+730", "07", "\x00", "\ufeff730"])
    return text.encode(), NOT_JSON


def _float(rng: random.Random) -> Bad:
    text = rng.choice(["7.5", "730.0", "1e3", "-0.5", "1e400", "NaN", "Infinity", "-Infinity"])
    if rng.random() < 0.5:
        text = repr(rng.uniform(-1e9, 1e9))
    return text.encode(), _not_int("float")


def _negative(rng: random.Random) -> Bad:
    n = rng.choice([0, -1, -730, -MAX_ID, rng.randint(-(10**12), -1)])
    raw = rng.choice([str(n), json.dumps({"app_id": n})])
    return raw.encode(), f"app_id {n} is out of range 1..{MAX_ID}"


def _huge(rng: random.Random) -> Bad:
    n = rng.choice([MAX_ID + 1, 2**63, 10**30, rng.randint(MAX_ID + 1, 10**300)])
    raw = rng.choice([str(n), json.dumps({"app_id": n})])
    return raw.encode(), f"app_id {n} is out of range 1..{MAX_ID}"


def _nested(rng: random.Random) -> Bad:
    return rng.choice(
        [
            (b'{"app_id": {"app_id": 730}}', _not_int("dict")),
            (b'{"app_id": [730]}', _not_int("list")),
            (b"[730]", _not_int("list")),
            (b'{"id": 730}', "object without an app_id field"),
            (b'{"a": [1, {"b": {"c": null}}]}', "object without an app_id field"),
            (b"{}", "object without an app_id field"),
            (b'{"app_id": "730"}', _not_int("str")),
            (b'"730"', _not_int("str")),
            (b'{"app_id": null}', _not_int("NoneType")),
            (b"null", _not_int("NoneType")),
            (b"true", _not_int("bool")),
            (b'{"app_id": false}', _not_int("bool")),
            (b'{"app_id": 730', NOT_JSON),
        ]
    )


def _deep(rng: random.Random) -> Bad:
    """Nesting deeper than the JSON parser's recursion allows, yet under the size limit."""
    depth = rng.randint(1000, 1020)
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    if opener == "[":
        return ("[" * depth).encode(), "JSON nested too deeply"
    # Objects cost 6 bytes a level: 150 levels fit and parse, so this is only "no app_id".
    return (opener * 150 + "1" + closer * 150).encode(), "object without an app_id field"


def _bad_utf8(rng: random.Random) -> Bad:
    # 0xFF never occurs in UTF-8; what follows it may or may not be valid on its own.
    junk = b"\xff" + bytes(rng.randint(0x80, 0xFF) for _ in range(rng.randint(0, 7)))
    raw = rng.choice([junk, b"730" + junk, b'{"app_id": "' + junk + b'"}', b"\xc3\x28", b"\xff"])
    return raw, "message is not UTF-8"


def _empty(rng: random.Random) -> Bad:
    return rng.choice([None, b"", b" ", b"\n\t  "]), "empty message"


def _oversized(rng: random.Random) -> Bad:
    raw = json.dumps({"app_id": 730, "pad": "x" * rng.randint(1020, 5000)}).encode()
    return raw, f"message too large ({len(raw)} bytes)"


KINDS: list[Callable[[random.Random], Bad]] = [
    _text, _float, _negative, _huge, _nested, _deep, _bad_utf8, _empty, _oversized,
]  # fmt: skip


def valid_seed(rng: random.Random, app: int) -> bytes:
    return rng.choice(
        [str(app), f" {app}\n", json.dumps({"app_id": app}), f'{{"app_id":{app},"x":1}}']
    ).encode()


def expected_raw(value: bytes | None) -> str:
    """What app-ids-failed carries as ``raw``: the text as received, cut at 1 KiB."""
    return "None" if value is None else value.decode("utf-8", "replace")[:1024]


@pytest.fixture
async def steam() -> AsyncIterator[FakeSteam]:
    async with FakeSteam(rate_limit=None) as fake:
        yield fake


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


async def test_thousands_of_bad_seeds_each_rejected_with_its_reason(
    tmp_path: Path, steam: FakeSteam, discord: FakeDiscord
) -> None:
    rng = random.Random(5)
    bad = [rng.choice(KINDS)(rng) for _ in range(GARBAGE)]
    valid = [(valid_seed(rng, app), "") for app in VALID_APPS for _ in range(2)]
    stream = bad + valid
    rng.shuffle(stream)
    # Garbage keys too: the intake must not care what the key is.
    # (A tombstone needs a key: Kafka has no message without both.)
    keys = [None, b"", b"\xff\xfe", b"730", b"not a key"]
    keyed = [(rng.choice(keys[1:] if v is None else keys), v) for v, _ in stream]

    async with FaultRun(tmp_path, steam, discord) as run:
        catalog = Catalog(steam, [*VALID_APPS, CANARY], seed=6)
        worker = run.pipeline.worker()
        await worker.start()
        sent_at = time.monotonic()
        assert await produce_raw(run.pipeline.kafka, run.pipeline.topic("app-ids"), keyed) == len(
            stream
        )
        await produce_raw(
            run.pipeline.kafka, run.pipeline.topic("app-ids"), [(None, str(CANARY).encode())]
        )

        async def all_priced() -> str:
            return mismatches(catalog.truth, await current_rows(run.pipeline))

        took = await wait_until_right(
            "the valid seeds and the canary priced", all_priced, timeout=90
        )

        async def all_rejected() -> list[tuple[str, str]]:
            messages = await run.pipeline.read_topic("app-ids-failed")
            got = [json.loads(v or b"{}") for _, v in messages]
            return [(m["raw"], m["reason"]) for m in got] if len(got) >= len(bad) else []

        rejected = await wait_for("every bad seed on app-ids-failed", all_rejected, timeout=60)
        flood_seconds = time.monotonic() - sent_at
        print(
            f"RECOVERY bad input: {len(stream)} seeds ({len(bad)} bad) through in {flood_seconds:.1f} s;"
            f" valid ones and the canary priced {took:.1f} s after sending"
        )
        expected = Counter((expected_raw(v), why) for v, why in bad)
        assert Counter(rejected) == expected, mismatches(expected, Counter(rejected))
        text = await worker.metrics()
        assert metric(text, "steam_bad_input_total", source="seed", reason="invalid") == len(bad)
        log = worker.log()
        assert "Traceback" not in log
        # Logged in moderation (20 lines a minute, then a count of the rest), counted in full.
        assert log.count("Rejected seed message") <= 40
        health = await worker.health()
        assert health is not None and health["consuming"]
        assert await run.leaks() == []
