"""promtool checks the Prometheus configs, the alert rules and their unit tests, and parses every
dashboard query (promtool comes with the Debian ``prometheus`` package that ``make up`` installs).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.monitoring import (
    PROMETHEUS_DIR,
    grafana_expr,
    operations_dashboard,
    panel_queries,
)

ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "tests" / "alerts_test.yml"
# The alerts issue 7 asks for; more may be added, none of these may go.
REQUIRED_ALERTS = {
    "HighAPIFailureRate",
    "PipelineDown",
    "SteamRateLimited",
    "CrawlStalled",
    "ConsumerLagHigh",
    "DiscordDeliveryFailing",
    "WebhookDisabled",
}


def promtool(*args: str, cwd: Path | None = None) -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: `make up` installs it (Debian package prometheus)")
    done = subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def rules() -> list[dict[str, Any]]:
    with ALERTS.open(encoding="utf-8") as f:
        return [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.docker.yml"])
def test_prometheus_config_passes_promtool(config: str) -> None:
    # Also loads and checks the rule files the config names.
    out = promtool("check", "config", str(PROMETHEUS_DIR / config))
    assert "SUCCESS: 1 rule files found" in out


def test_alert_rules_pass_promtool() -> None:
    out = promtool("check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(rules())} rules found" in out


def test_alert_rules_unit_tests_pass() -> None:
    out = promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert "SUCCESS" in out


def test_the_required_alerts_exist_and_are_documented() -> None:
    by_name = {r["alert"]: r for r in rules()}
    assert REQUIRED_ALERTS <= set(by_name)
    for name, rule in by_name.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    with ALERT_TESTS.open(encoding="utf-8") as f:
        cases = [c for t in yaml.safe_load(f)["tests"] for c in t["alert_rule_test"]]
    for rule in rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c.get("exp_alerts") for c in mine), f"{rule['alert']}: no firing case"
        quiet = [c for c in mine if not c.get("exp_alerts")]
        assert quiet, f"{rule['alert']}: no quiet case"


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    # Each panel query as a recording rule: promtool parses it with Prometheus's own parser.
    records = [
        {"record": f"dashboard:panel_{i}", "expr": grafana_expr(expr, interval=15, scrape=5)}
        for i, (_, _, expr) in enumerate(panel_queries(operations_dashboard()))
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    out = promtool("check", "rules", str(path))
    assert f"SUCCESS: {len(records)} rules found" in out
