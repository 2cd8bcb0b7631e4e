"""The agent tier: agents of the real app driven in-process (``agent.test_context()``).

No broker and no database: topic sends and table changelog writes are captured (``sent``),
tables live in memory (``TABLE_STORE=memory://``, see ``tests/support/agents.py``) and are
emptied before each test, and every module counts into a fresh metrics registry (``metrics``).
"""

from __future__ import annotations

import importlib
import sys

import pytest

from steamprice import topics
from steamprice.app import AGENT_MODULES, app
from steamprice.metrics import Metrics
from steamprice.topics import ALL_TOPICS
from tests.support.agents import Sent

# The whole app, as a worker loads it (agents, tables, timers, pages).
for _module in AGENT_MODULES:
    importlib.import_module(_module)


@pytest.fixture(autouse=True)
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """What agents send during the test; nothing reaches Kafka (no test may forget this)."""
    captured = Sent()
    for topic in ALL_TOPICS:
        monkeypatch.setattr(topic, "send", captured.capture(topic))
    for table in app.tables.values():
        monkeypatch.setattr(table.changelog_topic, "send_soon", captured.capture_changelog(table))
    monkeypatch.setattr(topics, "send_now", captured.send_now)
    return captured


@pytest.fixture(autouse=True)
def _empty_tables() -> None:
    for table in app.tables.values():
        table.data.clear()


@pytest.fixture(autouse=True)
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    """A fresh metrics bundle, in place of the worker's in every module that counts."""
    from steamprice import services

    worker_metrics, fresh = services.metrics, Metrics.create()
    for name, module in list(sys.modules.items()):
        if name.startswith("steamprice.") and getattr(module, "metrics", None) is worker_metrics:
            monkeypatch.setattr(module, "metrics", fresh)
    return fresh
