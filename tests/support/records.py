"""Records of the pipeline as tests build them: a price change and an observation with defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from steamprice.models import Observation, PriceChange

T = datetime(2025, 8, 18, 17, 0, tzinfo=UTC)


def price_change(app_id: int = 730, cc: str = "us", **overrides: Any) -> PriceChange:
    """A discount starting (19.99 -> 9.99, 50 %) on ``app_id`` in ``cc``; any field overridden.

    The event id is ``ev-<app>-<cc>-<kind>`` unless given: distinct apps and regions never
    collide in a ledger or table keyed by it.
    """
    fields: dict[str, Any] = {
        "event_id": f"ev-{app_id}-{cc}-{overrides.get('kind', 'discount_started')}",
        "app_id": app_id,
        "cc": cc,
        "kind": "discount_started",
        "old_status": "priced",
        "new_status": "priced",
        "old_currency": "USD",
        "new_currency": "USD",
        "old_initial": 1999,
        "old_final": 1999,
        "old_discount": 0,
        "new_initial": 1999,
        "new_final": 999,
        "new_discount": 50,
        "observed_at": T,
        "previous_observed_at": T,
    }
    fields.update(overrides)
    return PriceChange(**fields)


def observation(
    app_id: int = 730,
    cc: str = "us",
    final: int | None = 1999,
    *,
    initial: int | None = 1999,
    discount: int | None = 0,
    status: str = "priced",
    currency: str | None = "USD",
    at: datetime = T,
    obs_id: str | None = None,
) -> Observation:
    """One observation; the price fields are None unless ``status`` is ``priced``."""
    priced = status == "priced"
    return Observation(
        app_id=app_id,
        cc=cc,
        status=status,
        currency=currency if priced else None,
        initial=initial if priced else None,
        final=final if priced else None,
        discount_percent=discount if priced else None,
        observed_at=at,
        obs_id=obs_id or f"{app_id}-{cc}-{at.isoformat()}",
    )
