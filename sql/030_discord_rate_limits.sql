-- Discord's rate-limit windows survive a crash. When Discord asks the sender to wait (a 429's
-- retry_after, an empty bucket, a Cloudflare ban), the sender records here, in the transaction
-- that puts the message's rows back to pending, the time before which no request may go, by the
-- database's clock (UTC), keyed by what the wait applies to:
--   scope 'webhook', scope_key = the webhook id: its bucket, a 429 of scope user;
--   scope 'channel', scope_key = the channel id: the hidden per-channel limit (429 scope shared),
--     shared by every webhook that posts into the channel;
--   scope 'global', scope_key = '': a global 429 or a Cloudflare ban of this IP.
-- A sender that takes over waits until every window of its webhook, its channel and the global
-- one has ended. A window is only ever lengthened; DELETE a row to lift it by hand.
-- discord_webhook_channels remembers the channel each webhook posts into (the channel_id of
-- Discord's answers), so that a new sender knows which channel's window is its own.

CREATE TABLE IF NOT EXISTS discord_rate_limits (
    scope VARCHAR(16) NOT NULL,
    scope_key VARCHAR(64) NOT NULL,
    not_before DATETIME(6) NOT NULL,
    reason VARCHAR(32) NOT NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (scope, scope_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS discord_webhook_channels (
    webhook_id VARCHAR(32) NOT NULL PRIMARY KEY,
    channel_id VARCHAR(32) NOT NULL,
    learned_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
