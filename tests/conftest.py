"""Every tier's fixtures come from the support package (one place, see tests/support)."""

pytest_plugins = ["tests.support.fixtures"]
