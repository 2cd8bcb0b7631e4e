"""Discord notifier support: change events, notifier services on a scratch database, what showed."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from steamprice.database import Database
from steamprice.metrics import Metrics
from steamprice.models import PriceChange
from steamprice.notify.embeds import changes_shown
from steamprice.notify.notifier import DiscordNotifier
from steamprice.settings import Secret, Settings
from tests.support.database import drop_database, query
from tests.support.fakes.discord import FakeDiscord
from tests.support.infra import wait_for

OBSERVED = datetime(2025, 8, 18, 17, 0, tzinfo=UTC)


def price_change(
    app_id: int = 730,
    cc: str = "us",
    *,
    kind: str = "discount_started",
    before: int = 1999,
    after: int = 999,
    tag: str = "",
    **fields: Any,
) -> PriceChange:
    """A sale of 50 % starting (``before`` -> ``after``, USD x100); ``fields`` override any field.

    The event id is ``ev-<app>-<cc>-<tag>``: the same arguments make the same (redelivered) event.
    """
    values: dict[str, Any] = {
        "event_id": f"ev-{app_id}-{cc}-{tag}",
        "app_id": app_id,
        "cc": cc,
        "kind": kind,
        "old_status": "priced",
        "new_status": "priced",
        "old_currency": "USD",
        "new_currency": "USD",
        "old_initial": before,
        "old_final": before,
        "old_discount": 0,
        "new_initial": before,
        "new_final": after,
        "new_discount": 50,
        "observed_at": OBSERVED,
        "previous_observed_at": OBSERVED,
    }
    values.update(fields)
    return PriceChange(**values)


def shown(fake: FakeDiscord) -> Counter[tuple[int, str]]:
    """How many times each (app, region) was shown over every accepted message."""
    return Counter(x for m in fake.messages for x in changes_shown(m.visible_embeds))


def metric(notifier: DiscordNotifier, name: str, **labels: str) -> float:
    value = notifier.metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


class Notifiers:
    """Notifier services (each with its own Database service) on one scratch database."""

    def __init__(self) -> None:
        self.db = f"it_discord_{uuid.uuid4().hex[:10]}"
        self.running: list[tuple[Database, DiscordNotifier]] = []

    def settings(self, url: str, **overrides: Any) -> Settings:
        return Settings(mysql_db=self.db, discord_webhook_url=Secret(url), **overrides)

    async def start(self, url: str, **overrides: Any) -> DiscordNotifier:
        settings = self.settings(url, **overrides)
        metrics = Metrics.create()
        database = Database(settings, metrics)
        await database.start()
        await asyncio.wait_for(database.ready.wait(), 60)
        notifier = DiscordNotifier(settings, metrics, database)
        await notifier.start()
        self.running.append((database, notifier))
        return notifier

    async def stop(self, notifier: DiscordNotifier) -> None:
        for database, n in list(self.running):
            if n is notifier:
                await n.stop()
                await database.stop()
                self.running.remove((database, n))

    async def close(self) -> None:
        """Stop every notifier and drop the database."""
        for _, notifier in list(self.running):
            await self.stop(notifier)
        await drop_database(self.db)

    async def query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        return await query(self.db, sql, args)

    async def ledger(self) -> dict[str, int]:
        """Changes per status in ``discord_deliveries``."""
        rows = await self.query("SELECT status, COUNT(*) FROM discord_deliveries GROUP BY status")
        return {str(s): int(n) for s, n in rows}

    async def delivered(
        self, expected: int, status: str = "sent", timeout: float = 45
    ) -> dict[str, int]:
        """Wait until at least ``expected`` changes have ``status``; the ledger then."""

        async def probe() -> dict[str, int] | None:
            ledger = await self.ledger()
            return ledger if ledger.get(status, 0) >= expected else None

        return await wait_for(f"{expected} {status} rows", probe, timeout=timeout)
