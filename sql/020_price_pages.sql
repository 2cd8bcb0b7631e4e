-- The price pages (steamprice/pages): lows kept by the sink, indexes for the lists, sale ends.
--
-- price_lows: the lowest final price of each app in each region and currency, over the periods
-- of price_history, and when the latest period at that price started. The sink upserts it in the
-- same transaction as price_history with a rule that is commutative and idempotent (the lower
-- price wins; at an equal price the later start wins), so a redelivered or reordered batch
-- cannot move it the wrong way. The pages list 200,000 apps with their low and an "at the
-- historical low" filter without grouping price_history per request.
--
-- Indexes are added by plain ALTER TABLE: MySQL 8 has no IF NOT EXISTS for indexes or columns
-- (MariaDB has both), so a re-run after an interrupted migration meets "duplicate key name" (1061)
-- or "duplicate column name" (1060), which the migrator treats as already applied. One object
-- per statement, so that a re-run still adds the ones that are missing.

CREATE TABLE IF NOT EXISTS price_lows (
    app_id INT UNSIGNED NOT NULL,
    cc CHAR(2) NOT NULL,
    currency CHAR(3) NOT NULL,
    low_final INT UNSIGNED NOT NULL,
    low_at DATETIME(6) NOT NULL,
    PRIMARY KEY (app_id, cc, currency)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Backfill from the history already recorded (re-runnable: the same upsert rule as the sink).
INSERT INTO price_lows (app_id, cc, currency, low_final, low_at)
SELECT h.app_id, h.cc, h.currency, h.final_price, MAX(h.valid_from)
FROM price_history h
JOIN (SELECT app_id, cc, currency, MIN(final_price) AS low_final FROM price_history
      WHERE status = 'priced' AND currency IS NOT NULL AND final_price IS NOT NULL
      GROUP BY app_id, cc, currency) m
  ON m.app_id = h.app_id AND m.cc = h.cc AND m.currency = h.currency
     AND m.low_final = h.final_price
WHERE h.status = 'priced'
GROUP BY h.app_id, h.cc, h.currency, h.final_price
ON DUPLICATE KEY UPDATE
    low_at = IF(VALUES(low_final) < low_final, VALUES(low_at),
                IF(VALUES(low_final) = low_final, GREATEST(low_at, VALUES(low_at)), low_at)),
    low_final = LEAST(low_final, VALUES(low_final));

-- When the discount in force ends, as Steam announces it (UTC; NULL when unknown).
ALTER TABLE price_current ADD COLUMN discount_ends_at DATETIME NULL;

ALTER TABLE price_changes ADD COLUMN discount_ends_at DATETIME NULL;

-- /prices sorted by price in a region.
ALTER TABLE price_current ADD KEY idx_price_current_price (cc, final_price);

-- /prices sorted by name (and names found by prefix).
ALTER TABLE apps ADD KEY idx_apps_name (name);

-- /changes filtered by region or by kind, newest first (the primary key breaks ties).
ALTER TABLE price_changes ADD KEY idx_price_changes_cc (cc, observed_at);

ALTER TABLE price_changes ADD KEY idx_price_changes_kind (kind, observed_at)
