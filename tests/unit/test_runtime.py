"""The worker's process-wide tuning: the garbage collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import faust
import pytest

from steamprice import kafka, runtime


@pytest.fixture
def collector() -> Iterator[None]:
    """The test's changes to the collector undone afterwards."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_the_heap_of_the_start_is_frozen_and_collections_are_rarer(collector: None) -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults, as a worker starts
    runtime.tune_garbage_collector()
    assert gc.get_threshold() == runtime.GC_THRESHOLDS == (50_000, 20, 10)
    assert gc.get_freeze_count() > 10_000  # the modules and the app


async def test_the_worker_tunes_the_collector_as_it_starts(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def started(self: Any) -> None:
        pass

    monkeypatch.setattr(faust.Worker, "on_start", started)
    gc.set_threshold(700, 10, 10)
    worker = object.__new__(kafka.Worker)
    worker.untested = None
    await worker.on_start()
    assert gc.get_threshold() == runtime.GC_THRESHOLDS
