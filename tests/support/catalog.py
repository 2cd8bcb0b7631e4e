"""Generated catalogs in the fake store, changed in rounds, with their independent ground truth."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from tests.support.processes import Pipeline

T = TypeVar("T")


SWEEP_CURRENT = (
    "SELECT app_id, cc, status, currency, initial_price, final_price, discount_percent"
    " FROM price_current"
)


SWEEP_CHANGES = (
    "SELECT app_id, cc, kind, old_initial, old_final, old_discount, new_initial, new_final,"
    " new_discount FROM price_changes"
)


# (status, currency, initial, final, discount) of one app in one region, as price_current has it.
PriceRow = tuple[str, str | None, int | None, int | None, int | None]
# (app, cc, kind, old_initial, old_final, old_discount, new_initial, new_final, new_discount).


# (app, cc, kind, old_initial, old_final, old_discount, new_initial, new_final, new_discount).
ChangeRow = tuple[Any, ...]


_NOT_PRICED = (None, None, None, None)


class Catalog:
    """Prices of a block of apps in a FakeSteam, changed in rounds, and the ground truth.

    :attr:`truth` is what ``price_current`` must hold, :attr:`changes` every row
    ``price_changes`` must hold (each once). Mixes priced, discounted, unpriced (``data: []``)
    and unknown (``success:false``) apps; :meth:`mutate` makes one change of a known kind per
    region of a share of the apps, computed here independently of the pipeline's rules.
    """

    def __init__(
        self, steam: Any, apps: Iterable[int], ccs: Sequence[str] = ("us",), seed: int = 8
    ) -> None:
        from tests.support.fakes.steam import currency_for

        self.steam = steam
        self.apps = list(apps)
        self.ccs = tuple(ccs)
        self.rng = random.Random(seed)
        self.currency = {cc: currency_for(cc) for cc in self.ccs}
        self.truth: dict[tuple[int, str], PriceRow] = {}
        self.changes: list[ChangeRow] = []
        for app in self.apps:
            roll = self.rng.random()
            for cc in self.ccs:
                if roll < 0.04:
                    self.truth[app, cc] = ("unknown", *_NOT_PRICED)  # never set: success:false
                elif roll < 0.14:
                    self._set(app, cc, None)
                else:
                    initial = self.rng.choice((499, 999, 1499, 1999, 2999, 5999))
                    discount = self.rng.choice((0, 0, 0, 0, 25, 50))
                    self._set(app, cc, (initial, initial * (100 - discount) // 100, discount))

    def _set(self, app: int, cc: str, price: tuple[int, int, int] | None) -> None:
        if price is None:
            self.steam.set_no_price(app, cc)
            self.truth[app, cc] = ("no_price", *_NOT_PRICED)
        else:
            self.steam.set_price(app, cc, *price)
            self.truth[app, cc] = ("priced", self.currency[cc], *price)

    def mutate(self, share: float) -> list[ChangeRow]:
        """Change the price of about ``share`` of the known apps in every region; the changes."""
        made: list[ChangeRow] = []
        for app in self.apps:
            if self.truth[app, self.ccs[0]][0] == "unknown" or self.rng.random() >= share:
                continue
            for cc in self.ccs:
                status, _, initial, final, discount = self.truth[app, cc]
                pick = self.rng.random()
                new: tuple[int, int, int] | None
                if status == "no_price":
                    kind, new = "became_priced", (1999, 1999, 0)
                elif initial is None or final is None or discount is None:
                    raise AssertionError(f"priced row without prices: {self.truth[app, cc]}")
                elif discount:
                    if pick < 0.7:
                        kind, new = "discount_ended", (initial, initial, 0)
                    else:
                        d = 75 if discount != 75 else 50
                        kind, new = "discount_changed", (initial, initial * (100 - d) // 100, d)
                elif pick < 0.5:
                    kind, new = "discount_started", (initial, initial // 2, 50)
                elif pick < 0.8:
                    kind, new = "list_price_increased", (initial + 500, final + 500, 0)
                else:
                    kind, new = "became_unpriced", None
                old = (initial, final, discount)
                self._set(app, cc, new)
                made.append((app, cc, kind, *old, *(new or (None, None, None))))
        self.changes.extend(made)
        return made

    def changed_regions(self) -> Counter[tuple[int, str]]:
        """How many notifications each (app, region) is owed: one per change."""
        return Counter((row[0], row[1]) for row in self.changes)


async def current_rows(pipeline: Pipeline) -> dict[tuple[int, str], PriceRow]:
    return {(r[0], r[1]): tuple(r[2:]) for r in await pipeline.query(SWEEP_CURRENT)}  # type: ignore[misc]


async def change_rows(pipeline: Pipeline) -> Counter[ChangeRow]:
    return Counter(tuple(r) for r in await pipeline.query(SWEEP_CHANGES))
