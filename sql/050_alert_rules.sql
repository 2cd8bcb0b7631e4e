-- Alert rules (issue 14). A change goes to every rule that matches it, once per rule: the
-- delivery ledger is keyed by (event_id, rule_name). Rows from before rules existed belong to
-- the rule of the DISCORD_* settings, named 'default'. channel_id is the Discord channel a row
-- was posted to (learned from the webhook), so that the channel's message window survives a
-- new sender.
-- One statement: re-run after a crash, it fails as a whole on the duplicate column (1060) and
-- counts as applied. MySQL 8 and MariaDB both take it.
ALTER TABLE discord_deliveries
    ADD COLUMN rule_name VARCHAR(64) NOT NULL DEFAULT 'default' AFTER event_id,
    ADD COLUMN channel_id VARCHAR(32) NULL AFTER message_id,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (event_id, rule_name),
    ADD KEY idx_discord_deliveries_rule (status, rule_name, queued_at);

-- The rules as the workers see them, for dashboards (Kafka's <APP_ID>.alert-rules topic is the
-- source of truth). The webhook is never stored: only its id, a hint (its id and the last 4
-- characters of its token) and the hash discord_webhooks knows it by.
CREATE TABLE IF NOT EXISTS alert_rules (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    webhook_id VARCHAR(32) NOT NULL,
    webhook_hint VARCHAR(64) NOT NULL,
    webhook_key CHAR(64) NOT NULL,
    channel_id VARCHAR(32) NULL,
    filters TEXT NOT NULL,
    digest TINYINT(1) NOT NULL DEFAULT 0,
    source VARCHAR(16) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    KEY idx_alert_rules_webhook (webhook_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
