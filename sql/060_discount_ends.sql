-- Discount end dates (issue 15): what GetItems was asked about each discounted app and region,
-- and what it answered. One row per (app, region): the discount it is about is the price
-- (initial_price, final_price) first observed at `since` (price_current.observed_at and the
-- observed_at of the change that started it), so the same prices a month later are another
-- discount. `pending` rows are the queue of questions: an ask is recorded by the end-date agent
-- when a discounted observation needs one (at most once per discount per sweep) and stays
-- pending until GetItems answers; `attempts` and `retry_at` count and space the failed tries.
-- `ends_at` is the answer when Steam announced an end (UTC), `outcome` says why not otherwise.
-- price_current.discount_ends_at and price_changes.discount_ends_at (migration 020) are copied
-- from here, both when the answer comes and when their price rows are written, whichever is
-- last, so neither order loses the date.

CREATE TABLE IF NOT EXISTS discount_ends (
    app_id INT UNSIGNED NOT NULL,
    cc CHAR(2) NOT NULL,
    initial_price INT UNSIGNED NOT NULL,
    final_price INT UNSIGNED NOT NULL,
    since DATETIME(6) NOT NULL,
    asked_for DATETIME(6) NOT NULL,
    obs_id VARCHAR(64) NOT NULL,
    pending TINYINT(1) NOT NULL,
    attempts SMALLINT UNSIGNED NOT NULL DEFAULT 0,
    retry_at DATETIME(6) NULL,
    outcome VARCHAR(24) NULL,
    ends_at DATETIME NULL,
    checked_at DATETIME(6) NULL,
    PRIMARY KEY (app_id, cc),
    KEY idx_discount_ends_pending (pending, cc, asked_for)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
