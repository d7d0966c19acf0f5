-- Plain PostgreSQL: 1-minute OHLCV bars of every market's trades (yes price, dollars), as a materialized view.
-- Created empty (computing it inside the migration of a large database would hold the migration for long); fill
-- and refresh it with:
--     REFRESH MATERIALIZED VIEW bars_1m;                -- the first time
--     REFRESH MATERIALIZED VIEW CONCURRENTLY bars_1m;   -- afterwards: readers are not blocked (unique index below)
-- A refresh recomputes every bar from the trades table.
-- Columns: market; bucket (start of the minute, UTC, venue time); open/high/low/close (yes_price of the first,
-- highest, lowest and last trade in venue order: ts, then event_key); volume (contracts, sum of count); trades
-- (number of trades).
CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1m AS
SELECT market,
       date_bin(interval '1 minute', ts, timestamptz 'epoch') AS bucket,
       (array_agg(yes_price ORDER BY ts, event_key COLLATE "C"))[1] AS open,
       max(yes_price) AS high,
       min(yes_price) AS low,
       (array_agg(yes_price ORDER BY ts DESC, event_key COLLATE "C" DESC))[1] AS close,
       sum(count) AS volume,
       count(*) AS trades
FROM trades
GROUP BY market, date_bin(interval '1 minute', ts, timestamptz 'epoch')
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS bars_1m_market_bucket ON bars_1m (market, bucket);
