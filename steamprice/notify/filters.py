"""Which changes are notified: the opt-in ``DISCORD_*`` filters (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from steamprice.models import PriceChange
from steamprice.pricing import effective_discount
from steamprice.settings import Settings


@dataclass(frozen=True, slots=True)
class NotifyFilter:
    """The opt-in filters; the default (all empty) lets every change through."""

    min_discount: int = 0
    kinds: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    watchlist: frozenset[int] = frozenset()
    only_historical_lows: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifyFilter:
        return cls(
            min_discount=settings.discord_min_discount,
            kinds=frozenset(settings.discord_kinds),
            regions=frozenset(settings.discord_regions),
            watchlist=frozenset(settings.discord_watchlist),
            only_historical_lows=settings.discord_only_historical_lows,
        )

    def skip_reason(self, event: PriceChange) -> str | None:
        """Why ``event`` is not notified (the first filter it fails), or None to notify it."""
        if self.watchlist and event.app_id not in self.watchlist:
            return "filter: not in DISCORD_WATCHLIST"
        if self.regions and event.cc not in self.regions:
            return "filter: region not in DISCORD_REGIONS"
        if self.kinds and event.kind not in self.kinds:
            return "filter: kind not in DISCORD_KINDS"
        if self.min_discount:
            d = (
                effective_discount(event.new_initial, event.new_final, event.new_discount)
                if event.new_status == "priced"
                else 0
            )
            if d < self.min_discount:
                return f"filter: discount {d}% < DISCORD_MIN_DISCOUNT"
        if self.only_historical_lows and not (
            event.new_historical_low or event.matches_historical_low
        ):
            return "filter: not a historical low"
        return None
