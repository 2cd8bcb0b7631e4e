"""The monitoring artefacts as tests read them: dashboards, their queries, Grafana's variables."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "monitoring" / "prometheus"
GRAFANA_DIR = ROOT / "monitoring" / "grafana"
GRAFANA_VARIABLE_RE = re.compile(r"\$\{?(__\w+)\}?")


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return [p for p in panels if p.get("type") != "row"]


def grafana_expr(expr: str, interval: float, scrape: float, range_: float = 3600.0) -> str:
    """A panel query with Grafana's global variables replaced the way Grafana does.

    ``$__rate_interval`` is max($__interval + scrape interval, 4 x scrape interval), so that a
    rate always spans at least four scrapes.
    """
    values = {
        "__interval": f"{interval:g}s",
        "__rate_interval": f"{max(interval + scrape, 4 * scrape):g}s",
        "__range": f"{range_:g}s",
    }

    def replace(match: re.Match[str]) -> str:
        assert match.group(1) in values, f"unsupported Grafana variable in {expr!r}"
        return values[match.group(1)]

    return GRAFANA_VARIABLE_RE.sub(replace, expr)


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(panel title, refId, expr)`` of every Prometheus query of a dashboard."""
    return [
        (p["title"], t["refId"], t["expr"])
        for p in all_panels(dashboard)
        for t in p.get("targets", [])
        if "expr" in t
    ]


def operations_dashboard() -> dict[str, Any]:
    path = GRAFANA_DIR / "dashboards" / "steamprice-operations.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))
