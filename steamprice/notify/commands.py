"""Operator commands of the Discord ledger: re-queue ``uncertain`` changes, re-enable a webhook."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiomysql
from faust.cli import AppCommand

from steamprice.app import app, settings
from steamprice.database import TRANSIENT_ERRORS, connect_kwargs, describe_error
from steamprice.notify import ledger
from steamprice.notify.webhook import WebhookUrlError, parse_webhook_url

T = TypeVar("T")


async def _in_ledger(command: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction on ``MYSQL_DB``; errors end the command."""
    try:
        conn = await aiomysql.connect(**connect_kwargs(settings), autocommit=False)
    except TRANSIENT_ERRORS as exc:
        raise SystemExit(f"steamprice {command}: {describe_error(exc)}") from None
    try:
        async with conn.cursor() as cur:
            result = await work(cur)
        await conn.commit()
        return result
    except TRANSIENT_ERRORS as exc:
        raise SystemExit(f"steamprice {command}: {describe_error(exc)}") from None
    finally:
        conn.close()


@app.command()
async def discord_requeue_uncertain(self: AppCommand) -> None:
    """Queue the changes marked 'uncertain' again (each may then show twice in Discord)."""
    moved = await _in_ledger("discord-requeue-uncertain", ledger.requeue_uncertain)
    self.say(
        f"Re-queued {moved} uncertain changes; the Discord sender posts them within seconds"
        if moved
        else "No uncertain changes"
    )


@app.command()
async def discord_enable_webhook(self: AppCommand) -> None:
    """Call DISCORD_WEBHOOK_URL again although it was found deleted or unauthorised."""
    try:
        webhook = parse_webhook_url(settings.discord_webhook_url.get())
    except WebhookUrlError as exc:
        raise SystemExit(f"steamprice discord-enable-webhook: {exc}") from None

    async def enable(cur: Any) -> Any:
        return await ledger.enable_webhook(cur, webhook.key)

    was = await _in_ledger("discord-enable-webhook", enable)
    if was is None:
        self.say(f"Discord webhook {webhook.redacted} is not disabled")
        return
    reason, since = was
    self.say(
        f"Discord webhook {webhook.redacted} enabled again (disabled since {since:%Y-%m-%d %H:%M}"
        f" UTC: {reason}); restart the workers for the sender to call it"
    )
