-- Backfill price_history on databases that already hold prices from before it existed.
--
-- Each recorded change closes the period of its old price: [previous_observed_at, observed_at).
-- Each row of price_current is the open period, from its last change (or, without one, from
-- the only observation we have). Runs once; INSERT IGNORE plus the primary key also make a
-- re-run after an interrupted migration harmless (both sides are columns of the same types,
-- so IGNORE cannot truncate anything).

INSERT IGNORE INTO price_history
    (app_id, cc, valid_from, valid_to, status, currency, initial_price, final_price,
     discount_percent, last_observed_at)
SELECT c.app_id, c.cc, c.previous_observed_at, c.observed_at, c.old_status, c.old_currency,
       c.old_initial, c.old_final, c.old_discount, c.previous_observed_at
FROM price_changes c
WHERE c.previous_observed_at IS NOT NULL AND c.previous_observed_at < c.observed_at;

INSERT IGNORE INTO price_history
    (app_id, cc, valid_from, valid_to, status, currency, initial_price, final_price,
     discount_percent, last_observed_at)
SELECT p.app_id, p.cc,
       COALESCE(
           (SELECT MAX(c.observed_at) FROM price_changes c
            WHERE c.app_id = p.app_id AND c.cc = p.cc AND c.observed_at <= p.observed_at),
           p.observed_at),
       NULL, p.status, p.currency, p.initial_price, p.final_price, p.discount_percent,
       p.observed_at
FROM price_current p;
