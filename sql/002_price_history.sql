-- Price history: one row per distinct price period of one app in one region.
--
-- A period starts when an observation differs from the open period (the same rule as change
-- detection, see steamprice.pricing.fingerprint) and stays open (valid_to NULL) until the next
-- one starts. The primary key makes a redelivered observation a no-op: the period it opened
-- already exists under the same (app_id, cc, valid_from), and closing sets valid_to only once.
-- "History of one app": the primary key; "what changed in the last day": idx_price_history_from.

CREATE TABLE IF NOT EXISTS price_history (
    app_id INT UNSIGNED NOT NULL,
    cc CHAR(2) NOT NULL,
    valid_from DATETIME(6) NOT NULL,
    valid_to DATETIME(6) NULL,
    status VARCHAR(16) NOT NULL,
    currency CHAR(3) NULL,
    initial_price INT UNSIGNED NULL,
    final_price INT UNSIGNED NULL,
    discount_percent TINYINT UNSIGNED NULL,
    -- The newest observation that confirmed this price (Steam is not asked continuously).
    last_observed_at DATETIME(6) NOT NULL,
    PRIMARY KEY (app_id, cc, valid_from),
    KEY idx_price_history_open (app_id, cc, valid_to),
    KEY idx_price_history_from (valid_from),
    CONSTRAINT chk_price_history_period CHECK (valid_to IS NULL OR valid_to > valid_from)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
