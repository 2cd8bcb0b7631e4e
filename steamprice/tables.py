"""Every table of the pipeline, declared once (RocksDB-backed, changelog-recovered)."""

from __future__ import annotations

from steamprice.app import app
from steamprice.models import AppState, PriceHistory

# Schedule and health per app, keyed by app id; written by the schedule agent only (schedule
# topic, keyed by app id).
app_state_table = app.Table(
    "app-state", key_type=int, value_type=AppState, help="Per-app schedule and failures"
)

# Last price per (app, region), keyed "app_id:cc"; written by the change agent only, from
# prices-raw batches that hold the apps of one partition each, so every key is written in its
# app's partition. Written only when the price changes: a sweep of an unchanged catalog writes
# nothing. Values are the JSON of a PriceState, read as it is (no value type): most reads only
# confirm an unchanged price (pricing.settled), and decoding the Record costs five times more.
price_state_table = app.Table("price-state", key_type=str, help="Last price per app and region")

# Price history per (app, region), same key and writer: historical low, the periods of the last
# 90 days and the last few changes. Read only when a price changes.
price_history_table = app.Table(
    "price-history", key_type=str, value_type=PriceHistory, help="Lows and recent changes"
)


def price_key(app_id: int, cc: str) -> str:
    return f"{app_id}:{cc}"
