"""Web endpoints beside Faust's stats page: /metrics, /health; and the pipeline status gauge."""

from __future__ import annotations

import time
from typing import Any

from faust import web
from faust.sensors.prometheus import setup_prometheus_sensors
from mode import Service

from steamprice.app import app, settings
from steamprice.services import metrics, notifier

STARTED_AT = time.time()

if settings.enable_metrics:
    # Faust's own sensor metrics join ours on the same registry and the same /metrics page.
    setup_prometheus_sensors(
        app, pattern="/metrics", registry=metrics.registry, name_prefix="faust"
    )


class PipelineStatus(Service):
    """``steam_pipeline_status{pipeline="worker"}``: 1 while the worker runs, 0 once stopped."""

    async def on_started(self) -> None:
        metrics.pipeline_status.labels("worker").set(1)

    async def on_stop(self) -> None:
        metrics.pipeline_status.labels("worker").set(0)


app.service(PipelineStatus)


@app.page("/health")
class Health(web.View):
    """Read-only: is this worker consuming? Never shows settings or secrets."""

    async def get(self, request: web.Request) -> web.Response:
        assignment: set[Any] = set()
        try:
            assignment = app.consumer.assignment()
        except Exception:
            assignment = set()
        consuming = bool(assignment) and not app.rebalancing
        body = {
            "status": "ok" if consuming else "starting",
            "consuming": consuming,
            "rebalancing": bool(app.rebalancing),
            "assigned_partitions": len(assignment),
            "uptime_seconds": round(time.time() - STARTED_AT, 1),
            "discord": "disabled: " + notifier.disabled_reason
            if notifier.disabled_reason
            else ("on" if notifier.enabled else "off"),
        }
        return self.json(body, status=200 if consuming else 503)
