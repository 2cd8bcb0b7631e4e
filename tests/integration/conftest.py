"""Integration tests run against the real local stack (``make up``)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _stack_is_up(stack: None) -> None:
    """Every integration test needs the stack: fail at once, with the reason, when it is down."""
