"""Integration tests run against the real local stack (``make up``).

Every test collected here is marked ``integration``; those of the fault suite (the
``test_faults_*.py`` modules: kills, broker restarts, a database outage, Steam chaos, fuzzed
input, scale-out, the rebalance scenario) are marked ``slow`` too and run in the slow tier (``make test-slow``),
with the scenarios below that wait out a production timing of a minute or more.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent

# Operator scenarios that last a minute or more because they wait out production timings
# (never shortened: the timing is what they prove); they run in the slow tier with the faults.
SLOW_SCENARIOS = {
    "test_reseed.py",  # the 60 s SEED_DEDUPE_SECONDS window, then the re-check
    "test_static_membership.py",  # restarts, a twin refused, the session timeout
    "test_discord_exactly_once.py",  # kill -9 between a post and its commit, then recovery
    "test_discord_crash_window.py",  # a killed sender's 429 window honoured by the next one
    "test_alert_rules_burst.py",  # 10,000 changes delivered at the channels' own pace
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A ``pytestmark`` in a conftest marks nothing: mark the items of this folder here.
    for item in items:
        if item.path.parent != HERE:
            continue
        item.add_marker(pytest.mark.integration)
        if item.path.name.startswith("test_faults_") or item.path.name in SLOW_SCENARIOS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _stack_is_up(stack: None) -> None:
    """Every integration test needs the stack: fail at once, with the reason, when it is down."""
