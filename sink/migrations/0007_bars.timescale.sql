-- TimescaleDB: 1-minute OHLCV bars of every market's trades (yes price, dollars), as a continuous aggregate with
-- the same name and columns as the plain-mode materialized view (0007_bars.plain.sql), so queries work in both modes.
-- Columns: market; bucket (start of the minute, UTC, venue time); open/high/low/close (yes_price of the first,
-- highest, lowest and last trade in venue order: ts, then event_key); volume (contracts, sum of count); trades
-- (number of trades). time_bucket's 1-minute buckets start on whole minutes, as date_bin's from the epoch do.
-- Created empty (WITH NO DATA: filling it inside the migration of a large database would hold the migration for
-- long). A refresh policy (a TimescaleDB background job, every minute) materializes the buckets of the last 7 days
-- (Kafka's retention: as far back as a replay from the broker reaches) whose trades changed, up to a minute before
-- now; TimescaleDB tracks which time ranges changed, so replayed trades are picked up. Reads see materialized
-- buckets only (materialized_only, TimescaleDB's default). Older ranges (the first fill of a database that already
-- holds trades, a backfill or a replay from the archive) are refreshed by hand:
--     CALL refresh_continuous_aggregate('bars_1m', NULL, NULL);   -- only the ranges whose trades changed
-- The window is bounded on purpose: a policy with start_offset => NULL re-walks the whole history on every run,
-- even with nothing to refresh, so each run costs more as the archive grows.
CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT market,
       time_bucket(interval '1 minute', ts) AS bucket,
       (array_agg(yes_price ORDER BY ts, event_key COLLATE "C"))[1] AS open,
       max(yes_price) AS high,
       min(yes_price) AS low,
       (array_agg(yes_price ORDER BY ts DESC, event_key COLLATE "C" DESC))[1] AS close,
       sum(count) AS volume,
       count(*) AS trades
FROM trades
GROUP BY market, time_bucket(interval '1 minute', ts)
WITH NO DATA;
SELECT add_continuous_aggregate_policy('bars_1m', start_offset => INTERVAL '7 days',
                                       end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute',
                                       if_not_exists => true);
