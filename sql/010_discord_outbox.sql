-- The Discord delivery ledger becomes an outbox. The sink queues every change here (status
-- pending, or skipped by a filter) before its Kafka offset is committed; the one notifier that
-- holds the cluster-wide lock posts pending rows and marks them sending, then sent (or rejected).
-- A row found still sending after a crash may or may not have reached Discord: it is marked
-- uncertain and, unless DISCORD_RESEND_UNCERTAIN, not posted again.
-- Webhooks found deleted (404 code 10015) or with a bad token (401 code 50027) are remembered by
-- a hash of their id and token, so that a restart never calls them again; a new URL is a new key.

CREATE TABLE IF NOT EXISTS discord_webhooks (
    webhook_key CHAR(64) NOT NULL PRIMARY KEY,
    webhook_id VARCHAR(32) NOT NULL,
    disabled_reason VARCHAR(255) NOT NULL,
    disabled_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

ALTER TABLE discord_deliveries
    ADD COLUMN cc CHAR(2) NULL AFTER app_id,
    ADD COLUMN kind VARCHAR(32) NULL AFTER cc,
    ADD COLUMN change_json TEXT NULL,
    ADD COLUMN queued_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    ADD COLUMN attempts INT UNSIGNED NOT NULL DEFAULT 0,
    MODIFY COLUMN delivered_at DATETIME(6) NULL DEFAULT NULL,
    ADD KEY idx_discord_deliveries_status (status, queued_at)
