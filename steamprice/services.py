"""The worker's long-lived resources, one of each per process, started with the app."""

from __future__ import annotations

from steamprice.app import app, settings
from steamprice.database import Database
from steamprice.logs import quiet_repeated_library_errors
from steamprice.metrics import Metrics
from steamprice.notify.notifier import DiscordNotifier
from steamprice.notify.rulebook import RuleBook
from steamprice.store_client import StoreClient
from steamprice.topics import alert_rules_topic

metrics = Metrics.create()
store = StoreClient(settings, metrics)
database = Database(settings, metrics)
rule_book = RuleBook(
    settings.kafka_broker,
    alert_rules_topic.get_topic_name(),
    metrics,
    declare=alert_rules_topic.maybe_declare,
)
notifier = DiscordNotifier(settings, metrics, database, rule_book)

for _service in (store, database, rule_book, notifier):
    app.service(_service)  # type: ignore[arg-type]

# A broker outage must not write thousands of identical aiokafka errors a second.
quiet_repeated_library_errors()
