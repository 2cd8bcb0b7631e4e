"""The deployment artefacts agree with the code: compose, Dockerfile, Prometheus and Grafana."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from steamprice.metrics import Metrics
from steamprice.settings import Settings, load_settings
from tests.support.monitoring import (
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    ROOT,
    all_panels,
    grafana_expr,
    operations_dashboard,
    panel_queries,
)

DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))

SERVICES = {"kafka", "mysql", "prometheus", "grafana", "worker"}
# Contract settings the worker reads. The container addresses are fixed by compose; every other
# one is the user's, passed through as ``${NAME:-contract default}``.
CONTAINER_SETTINGS = {"KAFKA_BROKER", "MYSQL_HOST", "MYSQL_PORT", "WEB_PORT"}
USER_SETTINGS = {
    "APP_ID",
    "MYSQL_USER",
    "MYSQL_PASSWORD",
    "MYSQL_DB",
    "STEAM_API_KEY",
    "STEAM_COUNTRIES",
    "STEAM_MAX_REQUESTS_PER_MINUTE",
    "STEAM_BATCH_SIZE",
    "STEAM_BACKOFF_SECONDS",
    "RECRAWL_INTERVAL_SECONDS",
    "DISCORD_WEBHOOK_URL",
    "ENABLE_DISCORD",
    "ENABLE_METRICS",
}
CONTRACT_METRICS = {
    "steam_games_processed_total",
    "steam_api_requests_total",
    "steam_api_response_seconds_bucket",
    "steam_kafka_messages_total",
    "steam_task_duration_seconds_bucket",
    "steam_pipeline_status",
    "steam_queue_size",
}
INTERPOLATION_RE = re.compile(r"^\$\{(\w+):-(.*)\}$")
# Series Prometheus itself makes (the dashboard's "Firing alerts" counts ALERTS).
PROMETHEUS_SERIES = {"ALERTS", "ALERTS_FOR_STATE", "up"}


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = load_yaml(ROOT / "docker-compose.yml")
    assert "version" not in compose, "the compose spec has no version key"
    return dict(compose["services"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """``(host_ip, published, target)`` of every port, short or long syntax."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        if len(parts) != 3:
            parts = ["", *parts] if len(parts) == 2 else ["", parts[0], parts[0]]
        ports.append((parts[0], int(parts[1]), int(parts[2])))
    return ports


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> repo-relative source of every bind mount (``./...``)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = str(volume).split(":")[:2]
        if source.startswith("./"):
            mounts[target] = source[2:]
    return mounts


def named_volume_targets(service: dict[str, Any]) -> set[str]:
    targets = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = str(volume).split(":")[:2]
        if source and not source.startswith(("./", "/")):
            targets.add(target)
    return targets


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


# --- compose -------------------------------------------------------------------------------


def test_compose_declares_the_stack(services: dict[str, Any]) -> None:
    assert SERVICES <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["mysql"]["image"] == "mysql:8.4"
    assert services["worker"]["build"] == "."
    assert services["worker"]["restart"] == "unless-stopped"


def test_published_ports_are_the_local_stacks_on_loopback(services: dict[str, Any]) -> None:
    defaults = Settings()
    kafka_port = urlsplit(defaults.kafka_broker.split(",")[0]).port
    expected = {
        "kafka": kafka_port,
        "mysql": defaults.mysql_port,
        "prometheus": 9090,
        "grafana": 3000,
        "worker": defaults.web_port,
    }
    for name, port in expected.items():
        assert published_ports(services[name]) == [("127.0.0.1", port, port)], name


def test_worker_passes_every_contract_setting(services: dict[str, Any]) -> None:
    env = environment(services["worker"])
    missing = (CONTAINER_SETTINGS | USER_SETTINGS) - set(env)
    assert not missing
    for name in USER_SETTINGS:
        match = INTERPOLATION_RE.match(env[name])
        assert match and match.group(1) == name, f"{name} should be ${{{name}:-default}}"


def test_worker_only_passes_settings_the_worker_reads(services: dict[str, Any]) -> None:
    # A misspelt variable would be ignored silently and the default used instead.
    read = set(re.findall(r'get\(\s*"([A-Z_]+)"', inspect.getsource(load_settings)))
    assert read, "could not find the variable names in load_settings"
    assert set(environment(services["worker"])) <= read


def test_worker_compose_defaults_are_the_settings_defaults(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = environment(services["worker"])
    for name, value in env.items():
        match = INTERPOLATION_RE.match(value)
        monkeypatch.setenv(name, match.group(2) if match else value)
    # Parsed the way the worker parses them, so 40 vs 40.0 or "true" vs True cannot mislead.
    loaded = load_settings(search_path=str(tmp_path))
    defaults = Settings()
    for name in USER_SETTINGS:
        field = name.lower()
        assert getattr(loaded, field) == getattr(defaults, field), name


def test_worker_reaches_the_other_containers(services: dict[str, Any]) -> None:
    env = environment(services["worker"])
    kafka_env = environment(services["kafka"])
    broker = urlsplit(env["KAFKA_BROKER"])
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert any(a.split("://", 1)[1] == broker.netloc for a in advertised)
    assert broker.hostname == "kafka"
    assert env["MYSQL_HOST"] == "mysql"
    assert int(env["MYSQL_PORT"]) == published_ports(services["mysql"])[0][2]
    # The web server must listen beyond loopback for Prometheus and the published port.
    assert env["WEB_HOST"] == "0.0.0.0"
    assert int(env["WEB_PORT"]) == published_ports(services["worker"])[0][2]
    # Inside the worker's volume, one folder per APP_ID (its tables and its group identity).
    volume = next(iter(named_volume_targets(services["worker"])))
    assert env["DATA_DIR"] == f"{volume}/${{APP_ID:-{Settings().app_id}}}"


def test_mysql_service_matches_the_workers_credentials(services: dict[str, Any]) -> None:
    worker, mysql = environment(services["worker"]), environment(services["mysql"])
    assert mysql["MYSQL_DATABASE"] == worker["MYSQL_DB"]
    assert mysql["MYSQL_ROOT_PASSWORD"] == worker["MYSQL_PASSWORD"]
    # The image only creates root, so root must be the user the worker logs in as by default.
    user = INTERPOLATION_RE.match(worker["MYSQL_USER"])
    assert user and user.group(2) == "root"


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name in SERVICES - {"worker"}:
        check = services[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), name
    # The worker's is the image's own.
    worker_check = services["worker"].get("healthcheck")
    if worker_check is None:
        checks = [args for word, args in dockerfile_instructions() if word == "HEALTHCHECK"]
        assert len(checks) == 1
        assert "/health" in checks[0]
        assert "WEB_PORT" in checks[0] or str(Settings().web_port) in checks[0]
    else:
        assert "/health" in json.dumps(worker_check["test"])


def test_worker_waits_for_healthy_kafka_and_mysql(services: dict[str, Any]) -> None:
    depends = services["worker"]["depends_on"]
    for name in ("kafka", "mysql"):
        assert depends[name]["condition"] == "service_healthy"


def test_dockerfile_runs_the_worker_as_non_root() -> None:
    instructions = dockerfile_instructions()
    words = dict(instructions)  # last instruction of each kind wins, as in Docker
    assert words["FROM"].startswith("python:3.11-slim")
    assert words["USER"] not in ("root", "0")
    assert json.loads(words["ENTRYPOINT"]) == ["steamprice"]
    assert json.loads(words["CMD"]) == ["worker", "-l", "info"]
    assert str(Settings().web_port) in words["EXPOSE"].split()
    assert "/var/lib/steamprice" in words["VOLUME"]
    env = " ".join(args for word, args in instructions if word == "ENV")
    assert "DATA_DIR=/var/lib/steamprice" in env
    copies = [args for word, args in instructions if word == "COPY"]
    assert any(args.split()[0] == "sql" for args in copies)


# --- Prometheus ----------------------------------------------------------------------------


def test_prometheus_mounts_exist_and_rules_sit_beside_the_config(
    services: dict[str, Any],
) -> None:
    mounts = bind_mounts(services["prometheus"])
    for source in mounts.values():
        assert (ROOT / source).is_file(), source
    config_source = mounts["/etc/prometheus/prometheus.yml"]
    assert config_source == "monitoring/prometheus/prometheus.docker.yml"
    for rule_file in load_yaml(ROOT / config_source)["rule_files"]:
        assert mounts[f"/etc/prometheus/{rule_file}"] == f"monitoring/prometheus/{rule_file}"


def scrape_targets(config: dict[str, Any]) -> list[str]:
    return [
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]


def test_docker_prometheus_config_is_the_local_one_aimed_at_the_worker_service() -> None:
    local = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    docker = load_yaml(PROMETHEUS_DIR / "prometheus.docker.yml")
    port = Settings().web_port
    assert scrape_targets(local) == [f"127.0.0.1:{port}"]
    assert scrape_targets(docker) == [f"worker:{port}"]
    for config in (local, docker):
        for job in config["scrape_configs"]:
            job.pop("static_configs")
    # Same metrics_path, intervals, rule files and jobs: only the target differs.
    assert docker == local


# --- Grafana -------------------------------------------------------------------------------


def provisioned_datasources() -> list[dict[str, Any]]:
    return load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yml")[
        "datasources"
    ]


def test_grafana_mounts_match_the_provisioning(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == "monitoring/grafana/provisioning"
    providers = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml")
    for provider in providers["providers"]:
        assert mounts[provider["options"]["path"]] == "monitoring/grafana/dashboards"
    for source in mounts.values():
        assert (ROOT / source).is_dir(), source
    env = environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    # Every variable the provisioning files expand is given to the container.
    text = "".join(p.read_text() for p in (GRAFANA_DIR / "provisioning").rglob("*.yml"))
    for name in re.findall(r"\$\{?([A-Za-z_]\w*)", text):
        assert name in env, name


def test_datasources_point_at_the_compose_services(services: dict[str, Any]) -> None:
    by_uid = {ds["uid"]: ds for ds in provisioned_datasources()}
    prometheus = urlsplit(by_uid["prometheus"]["url"])
    assert prometheus.hostname == "prometheus" and prometheus.hostname in services
    assert prometheus.port == published_ports(services["prometheus"])[0][2]
    assert by_uid["prometheus"]["isDefault"] is True
    mysql = by_uid["mysql"]
    assert mysql["url"] == f"mysql:{published_ports(services['mysql'])[0][2]}"
    assert mysql["jsonData"]["database"] == Settings().mysql_db
    assert mysql["user"] == Settings().mysql_user


def test_dashboard_panels_use_provisioned_datasources() -> None:
    uids = {ds["uid"] for ds in provisioned_datasources()}
    assert DASHBOARDS
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
        panels = all_panels(dashboard)
        assert panels, path.name
        assert len({p["id"] for p in panels}) == len(panels), f"{path.name}: duplicate panel ids"
        for panel in panels:
            where = f"{path.name}: {panel.get('title')}"
            assert panel.get("description"), where
            assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), where
            assert panel["datasource"]["uid"] in uids, where
            for target in panel.get("targets", []):
                assert target.get("datasource", panel["datasource"])["uid"] in uids, where


def test_operations_dashboard_is_the_one_operators_link_to() -> None:
    dashboard = json.loads((GRAFANA_DIR / "dashboards" / "steamprice-operations.json").read_text())
    assert dashboard["uid"] == "steamprice-ops"
    exprs = " ".join(expressions_of(dashboard))
    for name in CONTRACT_METRICS:
        assert name in exprs, name


# --- PromQL --------------------------------------------------------------------------------

_PROMQL_WORDS = frozenset(
    "by without on ignoring group_left group_right bool and or unless offset inf nan".split()
)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (not functions, labels, keywords or durations)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables such as $__rate_interval
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\s*(\()?", expr):
        if not match.group(2) and match.group(1).lower() not in _PROMQL_WORDS:
            names.add(match.group(1))
    return names


def exposed_metric_names() -> set[str]:
    """Every series name the worker's registry can expose."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
    }
    names = set()
    for family in Metrics.create().registry.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def expressions_of(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in all_panels(dashboard) for t in p.get("targets", []) if "expr" in t]


def test_promql_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, endpoint) (rate(a_bucket{x="y{z}"}[5m]))) '
        "/ on (job) group_left b_total offset 5m > bool 1e3 and c[$__rate_interval]"
    )
    assert promql_metric_names(expr) == {"a_bucket", "b_total", "c"}


def test_exposed_metric_names_follow_the_exposition_format() -> None:
    names = exposed_metric_names()
    assert CONTRACT_METRICS <= names
    assert "steam_games_processed" not in names  # counters are only exposed with _total


def test_dashboards_and_alerts_only_query_metrics_that_exist() -> None:
    known = exposed_metric_names()
    sources: dict[str, list[str]] = {
        p.name: expressions_of(json.loads(p.read_text(encoding="utf-8"))) for p in DASHBOARDS
    }
    alerts = load_yaml(PROMETHEUS_DIR / "alerts.yml")
    sources["alerts.yml"] = [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    queried = set()
    for source, exprs in sources.items():
        assert exprs, source
        for expr in exprs:
            names = promql_metric_names(expr)
            queried |= names
            unknown = {
                n
                for n in names
                if n not in known and n not in PROMETHEUS_SERIES and not n.startswith("faust_")
            }
            assert not unknown, f"{source}: {expr}"
    assert queried & known


# --- the operations dashboard --------------------------------------------------------------

# What the dashboard must answer (issue 7), as panel titles.
REQUIRED_PANELS = {
    "Pipeline status",
    "Games processed by task and status",
    "Store API success rate",
    "HTTP response time p95",
    "Kafka messages by topic",
    "Task duration p95",
    "Queue sizes",
    "Consumer lag by topic",
    "Rate-limit pauses",
    "Discord deliveries by status",
    "Discord 429s",
}


def test_operations_dashboard_answers_the_operators_questions() -> None:
    panels = all_panels(operations_dashboard())
    titles = [p["title"] for p in panels]
    assert len(set(titles)) == len(titles), (
        "panel titles are how docs/observability.md refers to panels"
    )
    assert REQUIRED_PANELS <= set(titles), REQUIRED_PANELS - set(titles)
    for panel in panels:
        assert panel.get("targets"), panel["title"]
        assert {t["refId"] for t in panel["targets"]} == {
            chr(65 + i) for i in range(len(panel["targets"]))
        }, panel["title"]


def test_dashboard_rates_follow_the_zoom() -> None:
    # A hard-coded [5m] hides bursts when zoomed in and breaks with a slower scrape interval.
    for title, _, expr in panel_queries(operations_dashboard()):
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", f"{title}: {expr}"


def test_grafana_variables_are_substituted_like_grafana() -> None:
    expr = "rate(a[$__rate_interval]) + rate(b[${__interval}])"
    assert grafana_expr(expr, interval=15, scrape=5) == "rate(a[20s]) + rate(b[15s])"
    assert grafana_expr(expr, interval=1, scrape=5) == "rate(a[20s]) + rate(b[1s])"
    with pytest.raises(AssertionError):
        grafana_expr("rate(a[$__unknown])", interval=1, scrape=1)


def test_the_observability_manual_describes_every_panel_alert_and_metric() -> None:
    manual = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    for title in (p["title"] for p in all_panels(operations_dashboard())):
        assert f"**{title}**" in manual, title
    for rule in (r for g in load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"] for r in g["rules"]):
        assert f"`{rule['alert']}`" in manual, rule["alert"]
    for family in Metrics.create().registry.collect():
        shown = f"{family.name}_total" if family.type == "counter" else family.name
        assert f"`{shown}" in manual, f"docs/observability.md's metric list lacks {shown}"
