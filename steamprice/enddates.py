"""Discount end dates from ``IStoreBrowseService/GetItems/v1``: request, answer, rules (pure).

``appdetails`` prices an app but never says when its discount ends; GetItems does, for up to a
few hundred apps per call, in each item's ``best_purchase_option.active_discounts[]``. It is an
*enrichment*: prices stay those of ``appdetails`` (GetItems has no currency code, and its best
purchase option can be another package or a bundle), and an end date is only trusted for the
offer ``appdetails`` priced.

**Which offer appdetails priced.** ``appdetails?filters=price_overview`` does not name the package
behind ``price_overview`` (only the unfiltered answer lists ``packages``, and it cannot be
batched: one store request per app, from the scarcest budget there is). What both answers do
carry is the price, in the same region and the same x100 units: so an item's end date is used
only when its purchase option's ``final_price_in_cents`` and ``original_price_in_cents`` equal
``appdetails``' ``final`` and ``initial``. Equal list and sale prices mean the same offer, or one
that cannot be told apart from it by anything a buyer sees. Anything else -- a bundle, another
edition, a price that moved between the two calls, a currency whose units differed -- leaves the
end unknown (``other_offer``): a missing date is better than a wrong one.

**Outcomes** (one per app and region asked; ``steam_games_processed_total{task="enddate"}``):

* ``known``: the end date, from the matching discount;
* ``not_found``: ``success`` is not 1 (15 for an unknown, removed or hidden app), or no item came
  back for the id;
* ``region_restricted``: ``unvailable_for_country_restriction`` (sic): not sold in that region;
* ``hidden``: ``success`` 1 but not ``visible``;
* ``free``: ``is_free`` and no purchase option; ``no_purchase_option``: none for another reason;
* ``not_discounted``: the purchase option shows no discount (the sale ended between the calls);
* ``other_offer``: a bundle, or prices other than ``appdetails``' (see above);
* ``ambiguous``: several active discounts and not exactly one end among those whose
  ``discount_amount`` is the whole cut (``original - final``);
* ``no_end_date``: the discount has no ``discount_end_date`` (or 0);
* ``bad_end_date``: an end that is not a number, already past, or more than a year away;
* ``malformed``: an item or purchase option of the wrong shape;
* ``request_failed``: GetItems gave no usable answer for the batch (after retries).

**When end dates are asked** (:func:`needs_end_date`): for each (app, region) that ``appdetails``
reports discounted, once per discount per sweep. A new or changed discount is asked at once; the
same discount again only when its app is re-priced on its schedule (a sweep later: an extended
sale shows on the next sweep) or re-seeded, never for a redelivered observation nor for an early
re-price between sweeps. An ask stays queued until GetItems answers it (an outage delays it, it
does not lose it). A date that moves is an update of the row, not a price change; a discount
that ends is the ordinary price change it is today.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import yarl

from steamprice.steam import StoreError

GETITEMS_PATH = "/IStoreBrowseService/GetItems/v1/"
# Valve's store asks for 250 items per call; the URL is the real cap: 400 ids in a 7.5 KB URL were
# answered, a 9.2 KB one refused. 250 seven-digit app ids take about 6,700 characters.
MAX_IDS_PER_REQUEST = 250
MAX_URL_CHARS = 8_000
# A learned limit (after a 400) never goes below this: one id takes about 200 characters.
MIN_URL_CHARS = 1_000
# Web API results that mean "slow down" (x-eresult header): LimitExceeded, RateLimitExceeded.
RATE_LIMIT_ERESULTS = frozenset({25, 84})
# An end further away than this is a sentinel or garbage, not a sale.
END_HORIZON = timedelta(days=366)

KNOWN = "known"
NOT_FOUND = "not_found"
REGION_RESTRICTED = "region_restricted"
HIDDEN = "hidden"
FREE = "free"
NO_PURCHASE_OPTION = "no_purchase_option"
NOT_DISCOUNTED = "not_discounted"
OTHER_OFFER = "other_offer"
AMBIGUOUS = "ambiguous"
NO_END_DATE = "no_end_date"
BAD_END_DATE = "bad_end_date"
MALFORMED = "malformed"
REQUEST_FAILED = "request_failed"
OUTCOMES = (
    KNOWN,
    NOT_FOUND,
    REGION_RESTRICTED,
    HIDDEN,
    FREE,
    NO_PURCHASE_OPTION,
    NOT_DISCOUNTED,
    OTHER_OFFER,
    AMBIGUOUS,
    NO_END_DATE,
    BAD_END_DATE,
    MALFORMED,
    REQUEST_FAILED,
)


# Not frozen: a frozen class costs four times as much to build (per discounted app of a sweep).
@dataclass(slots=True)
class Offer:
    """The discounted price ``appdetails`` reported for one app (x100 units, one region)."""

    app_id: int
    initial: int
    final: int


def discounted_offer(
    app_id: int, initial: int | None, final: int | None, discount_percent: int | None
) -> Offer | None:
    """The offer to ask an end date for, or None when there is no real cut.

    Same rule as the change detector's: a percentage with ``final >= initial`` (free-to-keep
    promotions) is no discount.
    """
    if initial is None or final is None or not discount_percent or final >= initial:
        return None
    return Offer(app_id, initial, final)


@dataclass(frozen=True, slots=True)
class EndDate:
    """What GetItems says about when one app's discount ends in one region."""

    app_id: int
    outcome: str
    ends_at: datetime | None = None  # set only when ``outcome == KNOWN``
    package_id: int | None = None
    detail: str = ""


# ---------------------------------------------------------------------------- request


def input_json(app_ids: Sequence[int], cc: str) -> str:
    """The compact request message: app ids and the region (which decides the prices).

    No ``data_request``: ``best_purchase_option`` comes back without one. No ``steam_realm``:
    the current ``StoreBrowseContext`` has no such field and the default realm is Steam Global.
    """
    request = {
        "ids": [{"appid": a} for a in app_ids],
        "context": {"language": "english", "country_code": cc.upper()},
    }
    return json.dumps(request, separators=(",", ":"))


def getitems_url(base: str, app_ids: Sequence[int], cc: str) -> yarl.URL:
    """The GET URL, encoded exactly as it is sent (its length is what Steam limits)."""
    return yarl.URL(base.rstrip("/") + GETITEMS_PATH).with_query(input_json=input_json(app_ids, cc))


def pack(
    base: str,
    app_ids: Iterable[int],
    cc: str,
    max_url_chars: int = MAX_URL_CHARS,
    max_ids: int = MAX_IDS_PER_REQUEST,
) -> list[list[int]]:
    """Split ``app_ids`` into batches as large as the URL limit (and ``max_ids``) allows.

    The encoded length grows by each id's own encoded fragment plus a comma, so it is summed
    rather than rebuilt per id; each batch's real URL is measured once more to be sure.
    """
    empty = len(str(getitems_url(base, [], cc)))
    comma = _encoded_len(base, cc, ",")
    batches: list[list[int]] = []
    batch: list[int] = []
    length = empty
    for app_id in app_ids:
        grow = _encoded_len(base, cc, json.dumps({"appid": app_id}, separators=(",", ":")))
        if batch:
            grow += comma
        if batch and (len(batch) >= max_ids or length + grow > max_url_chars):
            batches.append(batch)
            batch, length = [], empty
            grow -= comma
        batch.append(app_id)
        length += grow
    if batch:
        batches.append(batch)
    return [fitted for batch in batches for fitted in _fit(base, batch, cc, max_url_chars)]


def _fit(base: str, batch: list[int], cc: str, max_url_chars: int) -> list[list[int]]:
    # The sum above is exact for the characters a request holds; the real URL decides anyway.
    if len(batch) < 2 or len(str(getitems_url(base, batch, cc))) <= max_url_chars:
        return [batch]
    mid = len(batch) // 2
    return _fit(base, batch[:mid], cc, max_url_chars) + _fit(base, batch[mid:], cc, max_url_chars)


def _encoded_len(base: str, cc: str, fragment: str) -> int:
    """Characters ``fragment`` takes in the encoded query (yarl's quoting is per character)."""
    url = yarl.URL(base.rstrip("/") + GETITEMS_PATH).with_query(input_json=fragment)
    return len(url.raw_query_string) - len("input_json=")


# ---------------------------------------------------------------------------- answer


def split_getitems(
    status: int, body: bytes, eresult: str | None, app_ids: Sequence[int]
) -> dict[int, Any]:
    """Check one GetItems answer and return each requested app's item (absent: none came).

    The status and the ``x-eresult`` header are checked before the body is trusted: a Web API
    limit can show as a 429 or as an ``x-eresult`` of 25 or 84 on an otherwise empty answer.
    """
    code = _uint(eresult.strip()) if eresult is not None else None
    if status == 429 or code in RATE_LIMIT_ERESULTS:
        raise StoreError("rate_limited", f"HTTP {status}, x-eresult {eresult}", status)
    if status == 403:
        raise StoreError("banned", "HTTP 403 Forbidden", status)
    if status == 400:
        raise StoreError("bad_batch", "HTTP 400 (URL too long or request refused)", status)
    if status >= 500:
        raise StoreError("server", f"HTTP {status}", status)
    if status != 200:
        raise StoreError("http", f"HTTP {status}", status)
    if code is not None and code != 1:
        raise StoreError("server", f"x-eresult {eresult}", status)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise StoreError(
            "malformed", f"body is not JSON ({exc.__class__.__name__})", status
        ) from None
    response = doc.get("response") if isinstance(doc, dict) else None
    if not isinstance(response, dict):
        raise StoreError("malformed", "no response object", status)
    # Protobuf omits an empty repeated field: no items at all is {"response":{}}.
    items = response.get("store_items", [])
    if not isinstance(items, list):
        raise StoreError("malformed", "store_items is not a list", status)
    return match_items(items, app_ids)


def match_items(items: Sequence[Any], app_ids: Sequence[int]) -> dict[int, Any]:
    """Pair items with the requested ids: by ``id`` (or ``appid``), else by position.

    Unknown apps come back with ``appid`` 0, so ``id`` is the key. An item without any usable id
    is paired by its position only when the answer has exactly one item per requested id (some
    callers see unknown ids left out, which shifts every position after them).
    """
    wanted = set(app_ids)
    matched: dict[int, Any] = {}
    anonymous: list[tuple[int, Any]] = []
    for position, item in enumerate(items):
        item_id = None
        if isinstance(item, Mapping):
            item_id = _uint(item.get("id")) or _uint(item.get("appid"))
        if item_id:
            if item_id in wanted and item_id not in matched:
                matched[item_id] = item
        else:
            anonymous.append((position, item))
    if anonymous and len(items) == len(app_ids):
        for position, item in anonymous:
            matched.setdefault(app_ids[position], item)
    return matched


def end_date(item: Any, offer: Offer, now: datetime, horizon: timedelta = END_HORIZON) -> EndDate:
    """The end of ``offer``'s discount according to one GetItems item; never raises."""
    app_id = offer.app_id
    if not isinstance(item, Mapping):
        return EndDate(app_id, MALFORMED, detail=f"item is {type(item).__name__}")
    if item.get("unvailable_for_country_restriction") is True:
        return EndDate(app_id, REGION_RESTRICTED)
    success = item.get("success")
    if _uint(success) != 1:
        return EndDate(app_id, NOT_FOUND, detail=f"success {success!r}")
    if item.get("visible") is not True:
        return EndDate(app_id, HIDDEN)
    option = item.get("best_purchase_option")
    if option is None:
        return EndDate(app_id, FREE if item.get("is_free") is True else NO_PURCHASE_OPTION)
    if not isinstance(option, Mapping):
        return EndDate(app_id, MALFORMED, detail="best_purchase_option is not an object")
    package_id = _uint(option.get("packageid"))
    if not package_id and _uint(option.get("bundleid")):
        return EndDate(app_id, OTHER_OFFER, detail=f"bundle {option.get('bundleid')}")
    final = _uint(option.get("final_price_in_cents"))
    if final is None:
        return EndDate(app_id, MALFORMED, package_id=package_id, detail="no final price")
    # Absent when not discounted.
    original = _uint(option.get("original_price_in_cents", final))
    if original is None:
        return EndDate(
            app_id, MALFORMED, package_id=package_id, detail="original price is not a number"
        )
    if original <= final:
        return EndDate(app_id, NOT_DISCOUNTED, package_id=package_id)
    if (original, final) != (offer.initial, offer.final):
        return EndDate(
            app_id,
            OTHER_OFFER,
            package_id=package_id,
            detail=f"offers {original}->{final}, appdetails priced {offer.initial}->{offer.final}",
        )
    discounts = option.get("active_discounts")
    if discounts is None or discounts == []:
        return EndDate(
            app_id, NO_END_DATE, package_id=package_id, detail="no active discount listed"
        )
    if not isinstance(discounts, list):
        return EndDate(
            app_id, MALFORMED, package_id=package_id, detail="active_discounts is not a list"
        )
    if not any(isinstance(d, Mapping) for d in discounts):
        return EndDate(
            app_id, MALFORMED, package_id=package_id, detail="active_discounts holds no object"
        )
    chosen = _the_discount(discounts, original - final)
    if chosen is None:
        return EndDate(
            app_id, AMBIGUOUS, package_id=package_id, detail=f"{len(discounts)} active discounts"
        )
    end = chosen.get("discount_end_date")
    if end is None or end == 0:
        return EndDate(app_id, NO_END_DATE, package_id=package_id)
    seconds = _uint(end)
    if seconds is None or seconds > 2**32:
        return EndDate(app_id, BAD_END_DATE, package_id=package_id, detail=f"end {end!r}")
    ends_at = datetime.fromtimestamp(seconds, UTC)
    if ends_at <= now:
        return EndDate(
            app_id, BAD_END_DATE, package_id=package_id, detail=f"ended {ends_at.isoformat()}"
        )
    if ends_at > now + horizon:
        return EndDate(
            app_id, BAD_END_DATE, package_id=package_id, detail=f"ends {ends_at.isoformat()}"
        )
    return EndDate(app_id, KNOWN, ends_at, package_id=package_id)


def _the_discount(discounts: list[Any], cut: int) -> Mapping[str, Any] | None:
    """The one discount in force: the only one, or the one whose amount is the whole cut."""
    candidates = [d for d in discounts if isinstance(d, Mapping)]
    if len(discounts) == 1:
        return candidates[0]
    whole = [d for d in candidates if _uint(d.get("discount_amount")) == cut]
    ends = {repr(d.get("discount_end_date")) for d in whole}
    # Several whole-cut entries are fine only if they agree on the end.
    return whole[0] if whole and len(ends) == 1 else None


def end_dates(items: Mapping[int, Any], offers: Iterable[Offer], now: datetime) -> list[EndDate]:
    """One :class:`EndDate` per offer; an offer whose app got no item is ``not_found``."""
    results = []
    for offer in offers:
        if offer.app_id in items:
            results.append(end_date(items[offer.app_id], offer, now))
        else:
            results.append(EndDate(offer.app_id, NOT_FOUND, detail="no item in the answer"))
    return results


def _uint(value: Any) -> int | None:
    """A non-negative integer from a number or protobuf-JSON's int64-as-string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    return None


# ---------------------------------------------------------------------------- when to ask

# The same discount is asked again a sweep later: a little under the re-crawl interval, since the
# schedule takes up to 5 % off it (a stable per-app offset).
RESWEEP_SHARE = 0.9


# Not frozen: a frozen class costs four times as much to build (per discounted app of a sweep).
@dataclass(slots=True)
class Ask:
    """A discounted observation of one app in one region, handed on to ask for its end date.

    ``since`` is when this price was first observed (``price_current.observed_at``): with the
    prices it identifies the discount, so the same prices a month later are another discount.
    """

    app_id: int
    cc: str
    initial: int
    final: int
    since: datetime
    fetched_at: datetime  # when the observation was fetched
    obs_id: str
    reseeded: bool = False  # the app was re-priced because someone seeded it

    @property
    def offer(self) -> Offer:
        return Offer(self.app_id, self.initial, self.final)


@dataclass(frozen=True, slots=True)
class Asked:
    """What was last asked about one (app, region): the discount, and from which observation."""

    initial: int
    final: int
    since: datetime
    asked_for: datetime  # fetch time of the observation that asked
    obs_id: str


def needs_end_date(last: Asked | None, ask: Ask, *, resweep: timedelta) -> bool:
    """Whether ``ask`` should go to GetItems, given what was last asked for its app and region.

    A new discount (other prices, or the same prices first observed at another time) is asked
    at once. The same discount is asked again when its app comes round in the next sweep
    (``resweep`` after the observation that last asked) or is re-seeded -- not for a
    redelivered observation (same ``obs_id``) nor an early re-price between sweeps (a changed
    ``price_change_number``, a failed fetch retried). An ask about a discount older than the
    one recorded is stale and dropped. An ask is recorded when it is queued, and stays queued
    until GetItems answers: a failed request delays the answer, it does not drop it.
    """
    if last is None:
        return True
    if ask.since < last.since:
        return False
    if (ask.initial, ask.final, ask.since) != (last.initial, last.final, last.since):
        return True
    if ask.obs_id == last.obs_id:
        return False
    return ask.reseeded or ask.fetched_at - last.asked_for >= resweep


class BadAsks(ValueError):
    """A record of the asks topic that cannot be read; the message says why."""


def asks_record(cc: str, asks: Sequence[Ask]) -> dict[str, Any]:
    """The JSON value of one ``end-date-asks`` record: the asks of one batch and region.

    ``[app_id, initial, final, since, fetched_at, obs_id, reseeded]`` per ask, times ISO-8601.
    """
    return {
        "cc": cc,
        "asks": [
            [
                a.app_id,
                a.initial,
                a.final,
                a.since.astimezone(UTC).isoformat(),
                a.fetched_at.astimezone(UTC).isoformat(),
                a.obs_id,
                a.reseeded,
            ]
            for a in asks
        ],
    }


def read_asks(value: Any) -> list[Ask]:
    """The asks of one ``end-date-asks`` record; :class:`BadAsks` when it is not one."""
    if not isinstance(value, Mapping) or not isinstance(value.get("asks"), list):
        raise BadAsks(f"not an end-date-asks record: {value!r:.80}")
    cc = value.get("cc")
    if not isinstance(cc, str) or len(cc) != 2:
        raise BadAsks(f"cc {cc!r:.20} is not a region code")
    asks = []
    for item in value["asks"]:
        try:
            app_id, initial, final, since, fetched_at, obs_id, reseeded = item
            ask = Ask(
                _exact_int(app_id),
                cc,
                _exact_int(initial),
                _exact_int(final),
                _utc(since),
                _utc(fetched_at),
                str(obs_id),
                reseeded is True,
            )
        except (TypeError, ValueError) as exc:
            raise BadAsks(f"not an ask ({exc!r:.80}): {item!r:.80}") from None
        asks.append(ask)
    return asks


def _exact_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r:.20} is not a count")
    return value


def _utc(value: Any) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
