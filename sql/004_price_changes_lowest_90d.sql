-- The lowest final price of the 90 days before a change (same currency), as the change agent
-- computed it; NULL when the change is not comparable (not priced, or a new currency).

ALTER TABLE price_changes ADD COLUMN lowest_90d INT UNSIGNED NULL AFTER historical_low;
