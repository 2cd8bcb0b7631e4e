-- When each app was last checked in each region, kept per batch rather than per row.
--
-- Since batches (issue 12), an unchanged price is not written again: price_current.observed_at
-- is when the current price was first observed (it moves only when the price changes), and
-- price_history.last_observed_at stays the observation that opened the period. Every batch the
-- sink receives (the apps of one Steam answer that belong to one partition, one region) adds one
-- row here instead: its apps, as a JSON array, were all checked at checked_at. check_id is stable
-- for the batch, so a redelivered batch adds nothing. Rows older than twice the recrawl interval
-- are pruned by the worker. "Apps checked in a region since T":
--   SELECT COUNT(DISTINCT j.app_id) FROM price_checks c,
--     JSON_TABLE(c.app_ids, '$[*]' COLUMNS (app_id INT UNSIGNED PATH '$')) j
--   WHERE c.cc = 'us' AND c.checked_at >= T;
-- (JSON_TABLE: MySQL 8.0.4+, MariaDB 10.6+.)

CREATE TABLE IF NOT EXISTS price_checks (
    check_id CHAR(40) NOT NULL PRIMARY KEY,
    cc CHAR(2) NOT NULL,
    checked_at DATETIME(6) NOT NULL,
    apps SMALLINT UNSIGNED NOT NULL,
    app_ids TEXT NOT NULL,
    KEY idx_price_checks_checked (checked_at, cc)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
