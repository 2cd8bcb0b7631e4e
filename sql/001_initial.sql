-- Initial schema. Runs on MySQL 8 and MariaDB 10.11 alike: prices are integers in Steam's x100
-- units, times are UTC in DATETIME(6).

CREATE TABLE IF NOT EXISTS apps (
    app_id INT UNSIGNED NOT NULL PRIMARY KEY,
    name VARCHAR(512) NULL,
    developer VARCHAR(512) NULL,
    publisher VARCHAR(512) NULL,
    owners VARCHAR(64) NULL,
    ccu INT UNSIGNED NULL,
    tags TEXT NULL,
    first_seen_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS price_current (
    app_id INT UNSIGNED NOT NULL,
    cc CHAR(2) NOT NULL,
    status VARCHAR(16) NOT NULL,
    currency CHAR(3) NULL,
    initial_price INT UNSIGNED NULL,
    final_price INT UNSIGNED NULL,
    discount_percent TINYINT UNSIGNED NULL,
    observed_at DATETIME(6) NOT NULL,
    PRIMARY KEY (app_id, cc),
    KEY idx_price_current_discount (cc, discount_percent),
    KEY idx_price_current_observed (observed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS price_changes (
    event_id CHAR(40) NOT NULL PRIMARY KEY,
    app_id INT UNSIGNED NOT NULL,
    cc CHAR(2) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    currency CHAR(3) NULL,
    old_initial INT UNSIGNED NULL,
    old_final INT UNSIGNED NULL,
    old_discount TINYINT UNSIGNED NULL,
    new_initial INT UNSIGNED NULL,
    new_final INT UNSIGNED NULL,
    new_discount TINYINT UNSIGNED NULL,
    observed_at DATETIME(6) NOT NULL,
    old_status VARCHAR(16) NOT NULL,
    new_status VARCHAR(16) NOT NULL,
    old_currency CHAR(3) NULL,
    previous_observed_at DATETIME(6) NULL,
    new_historical_low TINYINT(1) NOT NULL DEFAULT 0,
    matches_historical_low TINYINT(1) NOT NULL DEFAULT 0,
    historical_low INT UNSIGNED NULL,
    recorded_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY idx_price_changes_observed (observed_at),
    KEY idx_price_changes_app (app_id, cc, observed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The Discord delivery ledger: one row per notified (or deliberately skipped) change.
CREATE TABLE IF NOT EXISTS discord_deliveries (
    event_id CHAR(40) NOT NULL PRIMARY KEY,
    app_id INT UNSIGNED NOT NULL,
    status VARCHAR(16) NOT NULL,
    message_id VARCHAR(32) NULL,
    detail VARCHAR(255) NULL,
    delivered_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
