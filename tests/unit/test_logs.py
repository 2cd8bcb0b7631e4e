"""RepeatFilter: a flood of one library error becomes a few lines and a count."""

from __future__ import annotations

import logging

from steamprice.logs import NOISY_LOGGERS, RepeatFilter, quiet_repeated_library_errors


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.client", logging.ERROR, __file__, 1, msg, args, None)


def test_a_flood_is_cut_to_the_burst_and_the_rest_is_counted() -> None:
    now = [0.0]
    f = RepeatFilter(burst=3, window=60.0, clock=lambda: now[0])
    passed = [
        r for r in (record("Unable connect to node %s", 1) for _ in range(1000)) if f.filter(r)
    ]
    assert len(passed) == 3
    # Another message has its own allowance.
    assert f.filter(record("Unable to update metadata from %s", [1]))
    now[0] = 61.0
    summary = record("Unable connect to node %s", 1)
    assert f.filter(summary)
    assert summary.getMessage() == "Unable connect to node 1 [997 more like this held back]"
    nxt = record("Unable connect to node %s", 1)
    assert f.filter(nxt) and nxt.getMessage() == "Unable connect to node 1"


def test_installed_once_on_each_noisy_logger() -> None:
    quiet_repeated_library_errors()
    quiet_repeated_library_errors()
    for name in NOISY_LOGGERS:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RepeatFilter) for f in filters) == 1
