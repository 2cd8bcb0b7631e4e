"""Every topic of the pipeline, declared once.

Keyed by app id (JSON integer), one record per app or event, except the batch topics
(``prices-raw``, ``prices-normalized``, ``end-date-asks``): each record there holds the apps of
one Steam answer that belong to one partition, sent to that partition explicitly (see
``steamprice.batches``).
"""

from __future__ import annotations

from typing import Any

import faust

from steamprice.app import app, settings
from steamprice.models import (
    CrawlRequest,
    FailedInput,
    PriceChange,
    ScheduleCommand,
)


def _keyed_by_app(short: str, value_type: type[faust.Record]) -> Any:
    """A topic keyed by the app id, created by the app with ``TOPIC_PARTITIONS`` partitions."""
    key_type: Any = int  # faust's stubs only admit models, bytes and str; int keys work
    return app.topic(
        settings.topic_name(short), key_type=key_type, value_type=value_type, internal=True
    )


# The seed topic takes raw bytes: a bare ``730`` or ``{"app_id": 730}``, with or without a key.
# Anything else must reach app-ids-failed, so nothing is decoded before the intake agent looks.
app_ids_topic = app.topic(
    settings.topic_name("app-ids"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    internal=True,
)
app_ids_failed_topic = _keyed_by_app("app-ids-failed", FailedInput)
# Internal: schedule commands, re-keyed by app id so the schedule table is co-partitioned.
schedule_topic = _keyed_by_app("schedule", ScheduleCommand)
# Internal: apps due for pricing now.
crawl_requests_topic = _keyed_by_app("crawl-requests", CrawlRequest)


def _batches(short: str) -> Any:
    """A batch topic: JSON values read by ``steamprice.batches``, no key, explicit partitions.

    No value type: a Record would refuse the shape of one record per app that these topics held
    before batches (still accepted, so an upgrade loses nothing in flight).
    """
    return app.topic(settings.topic_name(short), value_serializer="json", internal=True)


prices_raw_topic = _batches("prices-raw")
prices_normalized_topic = _batches("prices-normalized")
price_changes_topic = _keyed_by_app("price-changes", PriceChange)
# Internal: the discounted apps of each batch, to ask GetItems when their discount ends
# (``steamprice.enddates.asks_record``); same partition as the batch they come from.
end_date_asks_topic = _batches("end-date-asks")
# Discord alert rules, keyed by rule name, JSON values (a null value removes the rule); written
# by `steamprice alerts`, read whole by every worker (notify/rulebook.py). Compacted: the latest
# record per name is kept forever. One partition: a few hundred small records.
alert_rules_topic = app.topic(
    settings.topic_name("alert-rules"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=1,
    compacting=True,
    internal=True,
)

ALL_TOPICS = (
    app_ids_topic,
    app_ids_failed_topic,
    schedule_topic,
    crawl_requests_topic,
    prices_raw_topic,
    prices_normalized_topic,
    price_changes_topic,
    end_date_asks_topic,
    alert_rules_topic,
)
