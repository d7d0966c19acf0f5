-- Plain PostgreSQL (no TimescaleDB): BRIN on ts (tiny, rows arrive roughly in time order) for time-range scans,
-- and a btree on (market, ts) for "one market over time" queries.
CREATE INDEX IF NOT EXISTS orderbook_snapshots_ts_brin ON orderbook_snapshots USING brin (ts);
CREATE INDEX IF NOT EXISTS orderbook_deltas_ts_brin ON orderbook_deltas USING brin (ts);
CREATE INDEX IF NOT EXISTS trades_ts_brin ON trades USING brin (ts);
CREATE INDEX IF NOT EXISTS tickers_ts_brin ON tickers USING brin (ts);
CREATE INDEX IF NOT EXISTS market_lifecycle_ts_brin ON market_lifecycle USING brin (ts);
CREATE INDEX IF NOT EXISTS orderbook_snapshots_market_ts ON orderbook_snapshots (market, ts);
CREATE INDEX IF NOT EXISTS orderbook_deltas_market_ts ON orderbook_deltas (market, ts);
CREATE INDEX IF NOT EXISTS trades_market_ts ON trades (market, ts);
CREATE INDEX IF NOT EXISTS tickers_market_ts ON tickers (market, ts);
CREATE INDEX IF NOT EXISTS market_lifecycle_market_ts ON market_lifecycle (market, ts);
