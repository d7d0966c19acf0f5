-- Plain PostgreSQL (no TimescaleDB): BRIN on ts (tiny; rows arrive roughly in time order) for time-range scans.
-- Deliberately NO btree on (market, ts): with ~1M markets its inserts land at random pages and it halved the
-- COPY rate in `make bench-sink`; per-market queries use the BRIN time range (add such an index in a later
-- migration if the read side needs it more than ingest speed). The unique (event_key, ts) btree is required.
CREATE INDEX IF NOT EXISTS orderbook_snapshots_ts_brin ON orderbook_snapshots USING brin (ts);
CREATE INDEX IF NOT EXISTS orderbook_deltas_ts_brin ON orderbook_deltas USING brin (ts);
CREATE INDEX IF NOT EXISTS trades_ts_brin ON trades USING brin (ts);
CREATE INDEX IF NOT EXISTS tickers_ts_brin ON tickers USING brin (ts);
CREATE INDEX IF NOT EXISTS market_lifecycle_ts_brin ON market_lifecycle USING brin (ts);
