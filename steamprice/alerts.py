"""``steamprice alerts add|list|show|remove|test``: Discord alert rules on the rules topic.

The command writes the compacted ``<APP_ID>.alert-rules`` topic; every running worker follows it
(``notify/rulebook.py``) and applies a change within seconds. Webhook URLs are secrets: they go
to the topic and to Discord, and are shown only as their id and the last 4 token characters.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import aiomysql
import click
from faust.cli import AppCommand, argument, option

from steamprice.app import app, settings
from steamprice.database import connect_kwargs, describe_error
from steamprice.metrics import Metrics
from steamprice.models import PriceChange
from steamprice.notify.embeds import build_embed, payload
from steamprice.notify.rulebook import read_rules
from steamprice.notify.rules import (
    DEFAULT_RULE,
    AlertRule,
    RuleError,
    build_rule,
    check_name,
    default_rule,
)
from steamprice.notify.webhook import WebhookClient, WebhookUrlError
from steamprice.topics import alert_rules_topic

ACTIONS = ("add", "list", "show", "remove", "test")
ADD_OPTIONS = ("webhook", "apps", "regions", "kinds", "min_discount", "max_price", "hl", "digest")
RULE_COUNTS = (
    "SELECT status, COUNT(*), MAX(delivered_at) FROM discord_deliveries WHERE rule_name = %s"
    " GROUP BY status"
)


USAGE = "Usage: steamprice alerts add|list|show|remove|test [NAME] [OPTIONS]"


def usage_error(message: str) -> SystemExit:
    """A usage error (exit status 2, as click's own), raised from inside the running command."""
    click.echo(f"{USAGE}\nTry 'steamprice alerts --help' for help.\n\nError: {message}", err=True)
    return SystemExit(2)


async def current_rules() -> dict[str, AlertRule]:
    """The rules workers apply: the topic's, and the default rule of the DISCORD_* settings."""
    rules = await read_rules(settings.kafka_broker, alert_rules_topic.get_topic_name())
    default = default_rule(settings)
    if default is not None:
        rules[DEFAULT_RULE] = default
    return dict(sorted(rules.items()))


def describe(rule: AlertRule) -> dict[str, Any]:
    doc = rule.describe()
    doc["source"] = "DISCORD_* settings" if rule.name == DEFAULT_RULE else "alerts topic"
    return doc


def rule_line(rule: AlertRule) -> str:
    d = rule.describe()
    parts = [d["webhook"]]
    parts.append(f"apps {','.join(map(str, d['apps']))}" if rule.apps else "all apps")
    if rule.regions:
        parts.append(f"regions {','.join(d['regions'])}")
    if rule.kinds:
        parts.append(f"kinds {','.join(d['kinds'])}")
    if rule.min_discount:
        parts.append(f"discount >= {rule.min_discount}%")
    if rule.max_price:
        parts.append("max " + " ".join(f"{cc}={t}" for cc, t in d["max_price"].items()))
    if rule.historical_low:
        parts.append("historical lows only")
    if rule.digest:
        parts.append("digest")
    return f"{rule.name:<20} " + "; ".join(parts)


def sample_change(now: datetime) -> PriceChange:
    return PriceChange(
        event_id="steamprice-alerts-test",
        app_id=10,
        cc="us",
        kind="discount_started",
        old_status="priced",
        new_status="priced",
        old_currency="USD",
        new_currency="USD",
        old_initial=999,
        old_final=999,
        old_discount=0,
        new_initial=999,
        new_final=499,
        new_discount=50,
        observed_at=now,
        previous_observed_at=now,
    )


async def post_test(rule: AlertRule) -> tuple[bool, str]:
    """Post one sample embed through the rule's webhook; (accepted, Discord's answer)."""
    embed = build_embed(10, "Counter-Strike", [sample_change(datetime.now(UTC))])
    embed["title"] = f"steamprice test of alert rule {rule.name}"
    embed["description"] = "A sample: price changes matching this rule are posted here."
    try:
        hook = rule.hook
    except WebhookUrlError as exc:
        return False, str(exc)
    client = WebhookClient(hook, settings, Metrics.create())
    client.open()
    try:
        outcome = await client.post(payload([embed]))
    finally:
        await client.close()
    if outcome.action == "sent":
        return True, f"Discord accepted the test message (message id {outcome.message_id})"
    meaning = {
        "disable": "the webhook is deleted or its token is wrong: rules using it are disabled",
        "retry_after": f"rate limited; retry in {outcome.wait:.1f} s",
        "ban": "this IP is blocked by Cloudflare for a while",
        "backoff": "Discord or the network failed; try again later",
        "reject": "Discord refused the message",
    }[outcome.action]
    return False, f"Discord answered {outcome.detail}: {meaning}"


async def rule_counts(name: str) -> dict[str, int] | str:
    """Ledger rows of one rule per status, or why they could not be read."""
    try:
        conn = await aiomysql.connect(**connect_kwargs(settings), autocommit=True)
    except Exception as exc:
        return f"not readable ({describe_error(exc)})"
    try:
        async with conn.cursor() as cur:
            await cur.execute(RULE_COUNTS, (name,))
            return {str(s): int(n) for s, n, _ in await cur.fetchall()}
    except Exception as exc:
        return f"not readable ({describe_error(exc)})"
    finally:
        conn.close()


@app.command(
    argument("action", type=click.Choice(ACTIONS)),
    argument("name", required=False),
    option("--webhook", type=str, default=None, help="add: the Discord webhook URL (a secret)."),
    option("--apps", type=str, default=None, help="add: watchlist, app ids (730,570)."),
    option("--regions", type=str, default=None, help="add: regions (us,de)."),
    option("--kinds", type=str, default=None, help="add: change kinds (discount_started,...)."),
    option("--min-discount", type=int, default=None, help="add: minimum real discount, %."),
    option(
        "--max-price",
        type=str,
        multiple=True,
        help="add: target price per region, CC=AMOUNT in its currency (us=19.99, jp=1200).",
    ),
    option("--historical-low", "hl", is_flag=True, default=None, help="add: lows only."),
    option("--digest", is_flag=True, default=None, help="add: post as digests."),
    option("--replace", is_flag=True, default=False, help="add: replace a rule of that name."),
    option("--json", "as_json", is_flag=True, default=False, help="list/show: print JSON."),
)
async def alerts(self: AppCommand, action: str, name: str | None, **opts: Any) -> None:
    """Discord alert rules: add NAME --webhook URL [filters], list, show NAME, remove NAME,
    test NAME (posts a sample embed and shows Discord's answer)."""
    given = sorted(k for k in ADD_OPTIONS if opts.get(k) not in (None, ()))
    if action != "add" and (given or opts["replace"]):
        raise usage_error(f"options {', '.join(given) or 'replace'} only apply to 'add'")
    if action in ("add", "show", "remove", "test") and not name:
        raise usage_error(f"alerts {action} needs the rule's NAME")
    if action == "list" and name:
        raise usage_error("alerts list takes no NAME")
    as_json = opts["as_json"] or self.json
    try:
        if action == "add":
            assert name is not None
            await _add(self, name, opts)
            return
        rules = await current_rules()
    except RuleError as exc:
        raise SystemExit(f"steamprice alerts {action}: {exc}") from None
    if action == "list":
        if as_json:
            self.say(json.dumps([describe(r) for r in rules.values()], indent=2))
        else:
            self.say("\n".join(rule_line(r) for r in rules.values()) or "No alert rules.")
        return
    assert name is not None
    rule = rules.get(name)
    if rule is None:
        raise SystemExit(f"steamprice alerts {action}: no rule named {name!r}")
    if action == "show":
        doc = describe(rule)
        doc["deliveries"] = await rule_counts(name)
        self.say(json.dumps(doc, indent=2) if as_json else _show_text(doc))
    elif action == "remove":
        if name == DEFAULT_RULE:
            raise SystemExit(
                "steamprice alerts remove: the default rule comes from DISCORD_WEBHOOK_URL;"
                " unset it (or ENABLE_DISCORD=false) to remove it"
            )
        await alert_rules_topic.maybe_declare()
        await alert_rules_topic.send(key=name.encode(), value=None)
        await app.producer.flush()
        self.say(f"Rule {name} removed; running workers stop using it within seconds.")
    else:
        ok, answer = await post_test(rule)
        self.say(f"Rule {name}: {answer}")
        if not ok:
            raise SystemExit(1)


async def _add(self: AppCommand, name: str, opts: dict[str, Any]) -> None:
    check_name(name)
    if not opts.get("webhook"):
        raise usage_error("alerts add needs --webhook URL")
    rule = build_rule(
        name,
        webhook=opts["webhook"],
        apps=opts.get("apps"),
        regions=opts.get("regions"),
        kinds=opts.get("kinds"),
        min_discount=opts.get("min_discount") or 0,
        max_price=opts.get("max_price") or (),
        historical_low=bool(opts.get("hl")),
        digest=bool(opts.get("digest")),
    )
    existing = await read_rules(settings.kafka_broker, alert_rules_topic.get_topic_name())
    if name in existing and not opts["replace"]:
        raise SystemExit(
            f"steamprice alerts add: a rule named {name!r} exists (--replace to change it)"
        )
    await alert_rules_topic.maybe_declare()
    await alert_rules_topic.send(key=name.encode(), value=rule.to_json())
    await app.producer.flush()
    unpriced = sorted((rule.watch_regions or frozenset()) - set(settings.steam_countries))
    self.say(f"Rule {'replaced' if name in existing else 'added'}: {rule_line(rule)}")
    if unpriced:
        self.say(
            f"Note: {', '.join(unpriced)} not in STEAM_COUNTRIES: no changes there until they"
            " are priced."
        )
    self.say("Running workers apply it within seconds.")


def _show_text(doc: dict[str, Any]) -> str:
    lines = [f"{k:<15} {v}" for k, v in doc.items() if k != "deliveries"]
    counts = doc["deliveries"]
    if isinstance(counts, dict):
        counts = ", ".join(f"{n:,} {s}" for s, n in sorted(counts.items())) or "none yet"
    lines.append(f"{'deliveries':<15} {counts}")
    return "\n".join(lines)
