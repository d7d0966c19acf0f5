-- TimescaleDB: bars_1m (the continuous aggregate of 0007_bars.timescale.sql) per venue and market, like plain mode's
-- materialized view since 0008: recreated with the same columns plus `venue` (first), grouped by venue, market and
-- bucket, so the README's bars query reads the same columns in both modes and two venues' trades of a market with
-- the same name make separate bars. Plain mode needs no 0009 (0008 recreated its bars_1m).
-- Same definition otherwise (see 0007): 1-minute time_bucket, open/close in venue order (ts, then event_key),
-- materialized only, and the same bounded refresh policy (every minute, the last 7 days up to a minute ago).
-- Created empty (WITH NO DATA: a continuous aggregate cannot be refreshed inside the migration's transaction). The
-- policy fills the last 7 days on its next run; the bars of older trades come back with the refresh by hand, once,
-- after the upgrade:
--     CALL refresh_continuous_aggregate('bars_1m', NULL, NULL);
-- Dropping the old aggregate drops its materialized bars and its refresh policy with it.
DROP MATERIALIZED VIEW IF EXISTS bars_1m;
CREATE MATERIALIZED VIEW bars_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT venue,
       market,
       time_bucket(interval '1 minute', ts) AS bucket,
       (array_agg(yes_price ORDER BY ts, event_key COLLATE "C"))[1] AS open,
       max(yes_price) AS high,
       min(yes_price) AS low,
       (array_agg(yes_price ORDER BY ts DESC, event_key COLLATE "C" DESC))[1] AS close,
       sum(count) AS volume,
       count(*) AS trades
FROM trades
GROUP BY venue, market, time_bucket(interval '1 minute', ts)
WITH NO DATA;
SELECT add_continuous_aggregate_policy('bars_1m', start_offset => INTERVAL '7 days',
                                       end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute',
                                       if_not_exists => true);
