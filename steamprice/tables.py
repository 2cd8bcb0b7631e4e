"""Every table of the pipeline, declared once (RocksDB-backed, changelog-recovered)."""

from __future__ import annotations

from steamprice.app import app
from steamprice.models import AppState, PriceState

# Schedule and health per app, keyed by app id; written by the schedule agent (schedule topic)
# and the change agent (prices-normalized), both keyed by app id: co-partitioned.
app_state_table = app.Table(
    "app-state", key_type=int, value_type=AppState, help="Per-app schedule and failures"
)

# Last price and historical low per (app, region), keyed "app_id:cc"; written by the change agent
# only, from prices-normalized (keyed by app id), so every key stays in its app's partition.
price_state_table = app.Table(
    "price-state", key_type=str, value_type=PriceState, help="Last price per app and region"
)


def price_key(app_id: int, cc: str) -> str:
    return f"{app_id}:{cc}"
