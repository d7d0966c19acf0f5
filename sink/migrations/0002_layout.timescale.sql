-- TimescaleDB: every event table but market_lifecycle (a few rows per market's life, see 0003) becomes a hypertable on ts with the configured chunk interval
-- ({{chunk_interval}} is replaced by postgres.chunk_interval as an interval literal). The unique key
-- (event_key, ts) contains the partitioning column, as TimescaleDB requires. No default ts index
-- (chunks are already time-bounded); a (market, ts DESC) index serves per-market queries.
-- Compression settings (see sink/migrate.py for the policies, which are re-applied on every migrate):
--   segmentby = '' -- ~1M markets: segmenting by market would give segments of a handful of rows per chunk
--                     (compression needs ~1000 rows per segment to pay off), so no segmentby;
--   orderby = 'market, ts' -- rows of one market are contiguous inside a compressed chunk, so the per-batch
--                     min/max metadata of the orderby columns lets a market-filtered query skip almost all
--                     batches, and values of one market compress well together.
SELECT create_hypertable('orderbook_snapshots', 'ts', chunk_time_interval => {{chunk_interval}},
                         create_default_indexes => false, if_not_exists => true, migrate_data => true);
SELECT create_hypertable('orderbook_deltas', 'ts', chunk_time_interval => {{chunk_interval}},
                         create_default_indexes => false, if_not_exists => true, migrate_data => true);
SELECT create_hypertable('trades', 'ts', chunk_time_interval => {{chunk_interval}},
                         create_default_indexes => false, if_not_exists => true, migrate_data => true);
SELECT create_hypertable('tickers', 'ts', chunk_time_interval => {{chunk_interval}},
                         create_default_indexes => false, if_not_exists => true, migrate_data => true);
CREATE INDEX IF NOT EXISTS orderbook_snapshots_market_ts ON orderbook_snapshots (market, ts DESC);
CREATE INDEX IF NOT EXISTS orderbook_deltas_market_ts ON orderbook_deltas (market, ts DESC);
CREATE INDEX IF NOT EXISTS trades_market_ts ON trades (market, ts DESC);
CREATE INDEX IF NOT EXISTS tickers_market_ts ON tickers (market, ts DESC);
CREATE INDEX IF NOT EXISTS market_lifecycle_market_ts ON market_lifecycle (market, ts DESC);
ALTER TABLE orderbook_snapshots SET (timescaledb.compress, timescaledb.compress_segmentby = '',
                                     timescaledb.compress_orderby = 'market, ts');
ALTER TABLE orderbook_deltas SET (timescaledb.compress, timescaledb.compress_segmentby = '',
                                  timescaledb.compress_orderby = 'market, ts');
ALTER TABLE trades SET (timescaledb.compress, timescaledb.compress_segmentby = '',
                        timescaledb.compress_orderby = 'market, ts');
ALTER TABLE tickers SET (timescaledb.compress, timescaledb.compress_segmentby = '',
                         timescaledb.compress_orderby = 'market, ts');
