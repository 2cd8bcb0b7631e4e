"""Every tier's fixtures come from the support package (one place, see tests/support)."""

from __future__ import annotations

from tests.support.agents import build_in_process_app

pytest_plugins = ["tests.support.fixtures"]

# First thing in the session, before any test module or tier conftest imports an agent module:
# the app of this process is the agent tier's (memory tables, no broker).
build_in_process_app()
