"""End dates shown: the embed's "Sale ends <t:UNIX:R>", the notifier's rules, status's counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from steamprice.discount_ends import EndRow, discount_of, known_end, may_learn_end
from steamprice.notify.embeds import digest_line, field_for
from steamprice.report import RegionDiscounts, discount_ends_report
from tests.support.notify import OBSERVED, price_change

ENDS = datetime(2026, 5, 7, 17, 0, tzinfo=UTC)
UNIX = int(ENDS.timestamp())
WAIT = timedelta(seconds=10)


def row(**kw: object) -> EndRow:
    """The discount_ends row of the 19.99 -> 9.99 sale first observed at OBSERVED."""
    values: dict[str, object] = {
        "initial": 1999,
        "final": 999,
        "since": OBSERVED.astimezone(UTC).replace(tzinfo=None),
        "pending": False,
        "attempts": 0,
        "ends_at": ENDS.replace(tzinfo=None),
    }
    return EndRow(**{**values, **kw})  # type: ignore[arg-type]


def test_a_discount_with_a_known_end_says_when_it_ends_in_each_readers_time_zone() -> None:
    field = field_for(price_change(discount_ends_at=ENDS))
    assert f"\nSale ends <t:{UNIX}:R>" in field["value"]
    line = digest_line(730, "Game", [price_change(discount_ends_at=ENDS)])
    assert f"(-50%) until <t:{UNIX}:R>" in line


def test_no_end_line_without_a_known_end_or_without_a_discount() -> None:
    assert "Sale ends" not in field_for(price_change())["value"]
    ended = price_change(
        kind="discount_ended", new_final=1999, new_discount=0, discount_ends_at=ENDS
    )
    assert "Sale ends" not in field_for(ended)["value"]


def test_the_known_end_belongs_to_one_discount_only() -> None:
    prices = discount_of("priced", 1999, 999, 50)
    assert prices == (1999, 999)
    assert known_end(prices, OBSERVED, row()) == ENDS
    # The same prices first observed at another time are another discount; other prices too.
    assert known_end(prices, OBSERVED + timedelta(days=30), row()) is None
    assert known_end((1999, 499), OBSERVED, row()) is None
    assert known_end(prices, OBSERVED, row(ends_at=None)) is None
    assert known_end(prices, OBSERVED, None) is None
    # Not a discount: no end, whatever the row says.
    assert discount_of("priced", 1999, 1999, 0) is None
    assert discount_of("priced", 1999, 999, 0) is None
    assert discount_of("no_price", None, None, None) is None


def test_an_alert_waits_for_an_end_date_only_briefly_and_never_while_getitems_fails() -> None:
    prices = (1999, 999)
    soon = OBSERVED + timedelta(seconds=3)

    def may(r: EndRow | None, *, now: datetime = soon, failing: bool = False) -> bool:
        return may_learn_end(prices, OBSERVED, r, now=now, wait=WAIT, failing=failing)

    assert may(None)  # the ask is on its way to the queue
    assert may(row(pending=True, ends_at=None))  # queued, not yet tried
    assert not may(row(pending=True, ends_at=None, attempts=1))  # a try failed
    assert not may(None, failing=True)  # GetItems is failing: no wait at all
    assert not may(None, now=OBSERVED + WAIT)  # waited long enough
    assert not may(row(pending=False, ends_at=None))  # answered: no end announced
    assert not may_learn_end(None, OBSERVED, None, now=soon, wait=WAIT, failing=False)
    assert not may_learn_end(prices, OBSERVED, None, now=soon, wait=timedelta(0), failing=False)


def test_status_counts_discounts_with_and_without_a_known_end_in_every_region() -> None:
    report = discount_ends_report(
        ["us", "gb"], [RegionDiscounts("us", 212, 205, 3, 1), RegionDiscounts("de", 4, 0)]
    )
    assert report == [
        {
            "cc": "us",
            "discounted": 212,
            "known_end": 205,
            "unknown_end": 7,
            "asking": 3,
            "asking_after_failure": 1,
        },
        {
            "cc": "gb",
            "discounted": 0,
            "known_end": 0,
            "unknown_end": 0,
            "asking": 0,
            "asking_after_failure": 0,
        },
        {
            "cc": "de",
            "discounted": 4,
            "known_end": 0,
            "unknown_end": 4,
            "asking": 0,
            "asking_after_failure": 0,
        },
    ]
