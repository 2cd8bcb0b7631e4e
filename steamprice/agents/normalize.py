"""Normalize agent: raw Steam entries -> typed observations."""

from __future__ import annotations

import logging
from typing import Any

from steamprice.app import app
from steamprice.pricing import normalize
from steamprice.services import metrics
from steamprice.topics import prices_normalized_topic, prices_raw_topic

logger = logging.getLogger(__name__)


@app.agent(prices_raw_topic, name="normalize")
async def normalize_prices(stream: Any) -> None:
    async for raw in stream:
        obs, problem = normalize(raw)
        if problem:
            # Still forwarded as ``unknown``: the app was answered, just oddly.
            metrics.bad_input.labels("steam", "malformed_entry").inc()
            logger.warning(
                "App %d in %s: odd Steam entry (%s): %.200s", raw.app_id, raw.cc, problem, raw.entry
            )
        metrics.games_processed.labels("normalize", obs.status).inc()
        await prices_normalized_topic.send(key=obs.app_id, value=obs)
