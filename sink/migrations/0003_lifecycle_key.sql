-- Lifecycle events mostly carry no venue time (created, activated, deactivated, metadata, fees), so their ts is
-- the winning copy's receive time, which a dedup replay under a new app id may take from another gatherer.
-- (event_key, ts) would then let the same event in twice; the event key alone identifies it. The table holds
-- a few rows per market over its whole life, so it stays a plain table (no hypertable, see 0002).
ALTER TABLE market_lifecycle DROP CONSTRAINT IF EXISTS market_lifecycle_event_key_ts_key;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'market_lifecycle_event_key_key') THEN
        ALTER TABLE market_lifecycle ADD CONSTRAINT market_lifecycle_event_key_key UNIQUE (event_key);
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS market_lifecycle_market_ts ON market_lifecycle (market, ts DESC);
