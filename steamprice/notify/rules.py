"""Discord alert rules: what a rule is, how it is written and read, and which changes it takes.

Pure: no Faust, no I/O, no clock. A rule names a webhook (a secret: only its id and the last
four characters of its token are ever shown) and filters that all apply (and): a watchlist of
app ids or every app, regions, change kinds, a minimum real discount, a target price per
region, historical lows only; ``digest`` posts it as digests rather than one embed per app.

Amounts are Steam's x100 integers in every currency (JPY 968000 = ¥9,680; steam-api.md
"Units"): ``us=19.99`` is 1999 and ``jp=1200`` is 120000. Currencies that Steam shows without
a minor unit (:data:`NO_DECIMALS`) take whole amounts only.

:class:`RuleIndex` finds the rules of a change by app id, then region, so that routing a change
costs the rules that could match it, not every rule.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from steamprice.models import PriceChange
from steamprice.notify.embeds import NO_DECIMALS
from steamprice.notify.webhook import Webhook, WebhookUrlError, parse_webhook_url
from steamprice.pricing import KINDS, effective_discount
from steamprice.settings import Secret, Settings

# The rule the DISCORD_* settings define; a name no rule on the topic may take.
DEFAULT_RULE = "default"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
RULE_FORMAT = 1
MAX_APPS = 10_000
# Largest target accepted (x100 units): far above any Steam price in any currency.
MAX_AMOUNT = 10**11

# The currency Steam prices each store region in (``cc`` -> ISO 4217). Regions that Steam moved
# to USD (Argentina and Turkey, 2023-11) are USD. A target price is stored with the currency it
# was written in and only compared with prices in that currency.
REGION_CURRENCIES: Mapping[str, str] = {
    "us": "USD", "ca": "CAD", "mx": "MXN", "br": "BRL", "ar": "USD", "cl": "CLP", "co": "COP",
    "pe": "PEN", "uy": "UYU", "cr": "CRC", "gb": "GBP", "pl": "PLN", "ch": "CHF", "no": "NOK",
    "ru": "RUB", "ua": "UAH", "kz": "KZT", "tr": "USD", "il": "ILS", "sa": "SAR", "ae": "AED",
    "kw": "KWD", "qa": "QAR", "za": "ZAR", "in": "INR", "cn": "CNY", "jp": "JPY", "kr": "KRW",
    "hk": "HKD", "tw": "TWD", "sg": "SGD", "my": "MYR", "th": "THB", "id": "IDR", "ph": "PHP",
    "vn": "VND", "au": "AUD", "nz": "NZD",
    **{cc: "EUR" for cc in (
        "at", "be", "bg", "cy", "cz", "de", "dk", "ee", "es", "fi", "fr", "gr", "hr", "hu",
        "ie", "it", "lt", "lu", "lv", "mt", "nl", "pt", "ro", "se", "si", "sk",
    )},
}  # fmt: skip


class RuleError(ValueError):
    """A rule that cannot be used; the message says which part and why (never the webhook)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A price target in one region: final price at or below ``amount`` (x100) in ``currency``."""

    amount: int
    currency: str

    def __str__(self) -> str:
        return format_amount(self.amount, self.currency)


@dataclass(frozen=True)
class AlertRule:
    """One alert rule. Empty sets mean "any"; every filter that is set must pass."""

    name: str
    webhook: Secret = field(repr=False)
    apps: frozenset[int] = frozenset()
    regions: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    min_discount: int = 0
    max_price: Mapping[str, Target] = field(default_factory=dict)
    historical_low: bool = False
    digest: bool = False
    # Only the settings-defined default rule records the changes it skips in the ledger (as it
    # always did); other rules count them (steam_discord_rule_changes_total{outcome="skipped"}).
    record_skips: bool = False

    @property
    def hook(self) -> Webhook:
        return parse_webhook_url(self.webhook.get())

    @property
    def watch_regions(self) -> frozenset[str] | None:
        """Regions this rule can match (None: all); a target price implies its region."""
        if self.max_price:
            targets = frozenset(self.max_price)
            return targets & self.regions if self.regions else targets
        return self.regions or None

    def skip_reason(self, event: PriceChange) -> str | None:
        """Why ``event`` is not for this rule (the first filter it fails), or None."""
        if self.apps and event.app_id not in self.apps:
            return "filter: app not in the watchlist"
        regions = self.watch_regions
        if regions is not None and event.cc not in regions:
            return "filter: region not watched"
        if self.kinds and event.kind not in self.kinds:
            return f"filter: kind {event.kind} not watched"
        priced = event.new_status == "priced"
        if self.min_discount:
            d = (
                effective_discount(event.new_initial, event.new_final, event.new_discount)
                if priced
                else 0
            )
            if d < self.min_discount:
                return f"filter: discount {d}% < {self.min_discount}%"
        target = self.max_price.get(event.cc)
        if target is not None:
            if not priced or event.new_final is None:
                return "filter: not priced"
            if event.new_currency != target.currency:
                return f"filter: priced in {event.new_currency}, target in {target.currency}"
            if event.new_final > target.amount:
                return (
                    f"filter: {format_amount(event.new_final, target.currency)} > target {target}"
                )
        if self.historical_low and not (event.new_historical_low or event.matches_historical_low):
            return "filter: not a historical low"
        return None

    def matches(self, event: PriceChange) -> bool:
        return self.skip_reason(event) is None

    # ------------------------------------------------------------------ wire format

    def to_json(self) -> bytes:
        """The value on the rules topic (holds the webhook URL: the topic is a secret store)."""
        doc = {
            "format": RULE_FORMAT,
            "name": self.name,
            "webhook": self.webhook.get(),
            "apps": sorted(self.apps),
            "regions": sorted(self.regions),
            "kinds": sorted(self.kinds),
            "min_discount": self.min_discount,
            "max_price": {
                cc: {"amount": t.amount, "currency": t.currency}
                for cc, t in sorted(self.max_price.items())
            },
            "historical_low": self.historical_low,
            "digest": self.digest,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    def describe(self) -> dict[str, Any]:
        """What ``alerts list/show`` print: everything but the webhook's token."""
        return {
            "name": self.name,
            "webhook": redact_webhook(self.webhook.get()),
            "apps": sorted(self.apps) or "all",
            "regions": sorted(self.watch_regions or ()) or "all",
            "kinds": sorted(self.kinds) or "all",
            "min_discount": self.min_discount,
            "max_price": {cc: str(t) for cc, t in sorted(self.max_price.items())},
            "historical_low": self.historical_low,
            "digest": self.digest,
        }


def redact_webhook(url: str) -> str:
    """``webhook 1234567890/…abcd``: the id and the last 4 characters of the token at most."""
    try:
        hook = parse_webhook_url(url)
    except WebhookUrlError:
        return "(not a webhook URL)"
    return f"webhook {hook.webhook_id}/…{hook.token[-4:] if len(hook.token) > 8 else ''}"


def webhook_key(url: str) -> str:
    """The stable hash ``discord_webhooks`` and ``alert_rules`` know a webhook by."""
    return parse_webhook_url(url).key


# ---------------------------------------------------------------------- parsing


def format_amount(amount: int, currency: str) -> str:
    """x100 units as people write them: ``19.99``, ``1200`` (no decimals for JPY and the like)."""
    if currency.upper() in NO_DECIMALS:
        return f"{amount // 100}"
    return f"{amount // 100}.{amount % 100:02d}"


def parse_amount(text: str, cc: str) -> Target:
    """``19.99`` in ``us`` -> 1999 USD; ``1200`` in ``jp`` -> 120000 JPY (Steam's x100)."""
    currency = REGION_CURRENCIES.get(cc)
    if currency is None:
        raise RuleError(f"unknown region {cc!r}: not a Steam store region")
    raw = text.strip()
    if not re.fullmatch(r"-?\d+(\.\d+)?", raw):
        raise RuleError(
            f"price {cc}={text!r}: write the amount with digits and an optional decimal point"
            " (19.99), without currency signs or thousands separators"
        )
    try:
        value = Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the pattern above admits only decimals
        raise RuleError(f"price {cc}={text!r} is not a number") from None
    if value < 0:
        raise RuleError(f"price {cc}={text!r} is negative")
    places = 0 if currency in NO_DECIMALS else 2
    if value != value.quantize(Decimal(1).scaleb(-places)):
        raise RuleError(
            f"price {cc}={text!r}: {currency} amounts are whole numbers"
            if places == 0
            else f"price {cc}={text!r}: {currency} has at most 2 decimals"
        )
    amount = int(value * 100)
    if amount > MAX_AMOUNT:
        raise RuleError(f"price {cc}={text!r} is implausibly large")
    return Target(amount, currency)


def parse_max_prices(items: Iterable[str]) -> dict[str, Target]:
    """``--max-price us=19.99 --max-price jp=1200`` (or ``us=19.99,jp=1200``)."""
    out: dict[str, Target] = {}
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            cc, sep, amount = part.partition("=")
            cc = cc.strip().lower()
            if not sep:
                raise RuleError(f"price {part!r}: write it as REGION=AMOUNT, e.g. us=19.99")
            check_region(cc)
            if cc in out:
                raise RuleError(f"price for {cc!r} given twice")
            out[cc] = parse_amount(amount, cc)
    return out


def check_region(cc: str) -> str:
    if cc not in REGION_CURRENCIES:
        raise RuleError(f"unknown region {cc!r}: not a Steam store region (e.g. us, gb, de, jp)")
    return cc


def parse_csv(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def parse_apps(text: str | None) -> frozenset[int]:
    """``730,570`` -> {730, 570}; anything but positive integers is an error."""
    apps: set[int] = set()
    for part in parse_csv(text):
        if not re.fullmatch(r"\d{1,10}", part) or not 0 < int(part) < 2**32:
            raise RuleError(f"app id {part!r} is not a positive integer (e.g. 730)")
        apps.add(int(part))
    if len(apps) > MAX_APPS:
        raise RuleError(f"a watchlist holds at most {MAX_APPS} app ids")
    return frozenset(apps)


def check_name(name: str, *, allow_default: bool = False) -> str:
    if not NAME_RE.fullmatch(name):
        raise RuleError(
            f"rule name {name!r}: 1-64 lowercase letters, digits, '-' or '_', starting with a"
            " letter or digit"
        )
    if name == DEFAULT_RULE and not allow_default:
        raise RuleError(f"rule name {DEFAULT_RULE!r} is the DISCORD_* settings' rule")
    return name


def build_rule(
    name: str,
    *,
    webhook: str,
    apps: str | None = None,
    regions: str | None = None,
    kinds: str | None = None,
    min_discount: int = 0,
    max_price: Sequence[str] = (),
    historical_low: bool = False,
    digest: bool = False,
) -> AlertRule:
    """A rule from the ``alerts add`` options; :class:`RuleError` names the first bad part."""
    check_name(name)
    try:
        parse_webhook_url(webhook)
    except WebhookUrlError:
        raise RuleError(
            "--webhook is not a Discord webhook URL of the form"
            " https://discord.com/api/webhooks/ID/TOKEN"
        ) from None
    region_set = frozenset(check_region(cc.lower()) for cc in parse_csv(regions))
    kind_set = frozenset(k.lower() for k in parse_csv(kinds))
    for kind in kind_set:
        if kind not in KINDS:
            raise RuleError(f"unknown change kind {kind!r}; known: {', '.join(KINDS)}")
    if not 0 <= min_discount <= 100:
        raise RuleError(f"--min-discount {min_discount} is not a percentage between 0 and 100")
    targets = parse_max_prices(max_price)
    if region_set and set(targets) - region_set:
        raise RuleError(
            f"--max-price names {', '.join(sorted(set(targets) - region_set))} outside --regions"
        )
    return AlertRule(
        name=name,
        webhook=Secret(webhook.strip()),
        apps=parse_apps(apps),
        regions=region_set,
        kinds=kind_set,
        min_discount=min_discount,
        max_price=targets,
        historical_low=historical_low,
        digest=digest,
    )


def rule_from_json(name: str, value: bytes) -> AlertRule:
    """A rule as the topic holds it, checked as strictly as ``alerts add`` checks it."""
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        raise RuleError("not JSON") from None
    if not isinstance(doc, dict):
        raise RuleError("not a JSON object")
    if doc.get("name") != name:
        raise RuleError("its name differs from its key")
    try:
        prices = doc.get("max_price") or {}
        targets = [
            f"{cc}={format_amount(int(t['amount']), str(t['currency']))}"
            for cc, t in prices.items()
        ]
        rule = build_rule(
            name,
            webhook=str(doc["webhook"]),
            apps=",".join(str(a) for a in doc.get("apps") or []),
            regions=",".join(doc.get("regions") or []),
            kinds=",".join(doc.get("kinds") or []),
            min_discount=int(doc.get("min_discount") or 0),
            max_price=targets,
            historical_low=bool(doc.get("historical_low")),
            digest=bool(doc.get("digest")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, RuleError):
            raise
        raise RuleError(f"malformed field ({exc.__class__.__name__})") from None
    for cc, t in prices.items():
        if rule.max_price[cc].currency != t["currency"]:
            raise RuleError(f"target of {cc} is in {t['currency']}, not the region's currency")
    return rule


def default_rule(settings: Settings) -> AlertRule | None:
    """The rule of the ``DISCORD_*`` settings (None when Discord is off)."""
    if not settings.discord_enabled:
        return None
    return AlertRule(
        name=DEFAULT_RULE,
        webhook=settings.discord_webhook_url,
        apps=frozenset(settings.discord_watchlist),
        regions=frozenset(settings.discord_regions),
        kinds=frozenset(settings.discord_kinds),
        min_discount=settings.discord_min_discount,
        historical_low=settings.discord_only_historical_lows,
        record_skips=True,
    )


# ---------------------------------------------------------------------- routing


@dataclass(frozen=True, slots=True)
class Routed:
    """The rules one change goes to, and those it was checked against and failed (with why)."""

    matched: tuple[AlertRule, ...]
    skipped: tuple[tuple[AlertRule, str], ...]
    evaluated: int


class _Bucket:
    """Rules of one index bucket, sorted by minimum discount: a change of discount ``d`` only
    needs the rules whose minimum is at most ``d`` (the others would refuse it)."""

    __slots__ = ("minimums", "rules")

    def __init__(self) -> None:
        self.rules: list[AlertRule] = []
        self.minimums: list[int] = []

    def add(self, rule: AlertRule) -> None:
        at = bisect_right(self.minimums, rule.min_discount)
        self.minimums.insert(at, rule.min_discount)
        self.rules.insert(at, rule)

    def upto(self, discount: int) -> list[AlertRule]:
        return self.rules[: bisect_right(self.minimums, discount)]


class RuleIndex:
    """Rules indexed by app id, then region, then minimum discount: a change is checked only
    against the rules that could take it.

    Four buckets: (app, region), (app, any region), (any app, region), (any app, any region).
    A watchlist rule with regions sits in one (app, region) bucket per pair.
    """

    def __init__(self, rules: Iterable[AlertRule]) -> None:
        self.rules = {r.name: r for r in rules}
        self._app_cc: dict[tuple[int, str], _Bucket] = {}
        self._app: dict[int, _Bucket] = {}
        self._cc: dict[str, _Bucket] = {}
        self._all = _Bucket()
        for rule in sorted(self.rules.values(), key=lambda r: r.name):
            regions = rule.watch_regions
            if rule.apps:
                for app in rule.apps:
                    if regions is None:
                        self._app.setdefault(app, _Bucket()).add(rule)
                    else:
                        for cc in regions:
                            self._app_cc.setdefault((app, cc), _Bucket()).add(rule)
            elif regions is None:
                self._all.add(rule)
            else:
                for cc in regions:
                    self._cc.setdefault(cc, _Bucket()).add(rule)

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(self, app_id: int, cc: str, discount: int = 100) -> list[AlertRule]:
        out: list[AlertRule] = []
        for bucket in (self._app_cc.get((app_id, cc)), self._app.get(app_id), self._cc.get(cc)):
            if bucket is not None:
                out += bucket.upto(discount)
        out += self._all.upto(discount)
        return out

    def route(self, event: PriceChange) -> Routed:
        """Every rule ``event`` goes to, each once; and the candidates that refused it."""
        matched: list[AlertRule] = []
        skipped: list[tuple[AlertRule, str]] = []
        discount = (
            effective_discount(event.new_initial, event.new_final, event.new_discount)
            if event.new_status == "priced"
            else 0
        )
        candidates = self.candidates(event.app_id, event.cc, discount)
        for rule in candidates:
            reason = rule.skip_reason(event)
            if reason is None:
                matched.append(rule)
            else:
                skipped.append((rule, reason))
        return Routed(tuple(matched), tuple(skipped), len(candidates))
