"""Integration tests run against the real local stack (``make up``).

Every test collected here is marked ``integration``; those of the fault suite (the
``test_faults_*.py`` modules: kills, broker restarts, a database outage, Steam chaos, fuzzed
input, scale-out, the rebalance scenario) are marked ``slow`` too and run in the slow tier (``make test-slow``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A ``pytestmark`` in a conftest marks nothing: mark the items of this folder here.
    for item in items:
        if item.path.parent != HERE:
            continue
        item.add_marker(pytest.mark.integration)
        if item.path.name.startswith("test_faults_"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _stack_is_up(stack: None) -> None:
    """Every integration test needs the stack: fail at once, with the reason, when it is down."""
