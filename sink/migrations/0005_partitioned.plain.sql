-- Plain PostgreSQL: the four high-volume event tables become declaratively partitioned by ts (RANGE), in ranges of
-- postgres.partition_interval ({{partition_interval}}) aligned to the Unix epoch; market_lifecycle and
-- coverage_gaps stay plain tables (a few rows per market or outage; lifecycle's key is event_key alone, 0003).
-- Per partition: the unique (event_key, ts) that absorbs replays (it contains the partition key, as PostgreSQL
-- requires), a (market, ts) b-tree for per-market reads and a BRIN on ts. A DEFAULT partition takes any row
-- outside the created ranges, so a COPY never fails for a missing partition; sink/partitions.py creates ranges
-- ahead of the clock and moves rows out of the default partition into proper ranges.
--
-- In-place upgrade of a database made by 0001-0004: the existing table is renamed <table>_legacy and ATTACHED as
-- one partition covering its rows' whole (aligned) time range: no row is copied and its unique index is adopted
-- as the partition's; only the (market, ts) index is built on it. An empty table (a fresh database) is dropped.
DO $$
DECLARE
    tbl   text;
    old   text;
    step  double precision := extract(epoch FROM {{partition_interval}});
    lo    timestamptz;
    hi    timestamptz;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['orderbook_snapshots', 'orderbook_deltas', 'trades', 'tickers'] LOOP
        IF (SELECT c.relkind FROM pg_class c WHERE c.oid = tbl::regclass) = 'p' THEN
            CONTINUE;  -- already partitioned
        END IF;
        old := tbl || '_legacy';
        EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl, old);
        EXECUTE format('ALTER TABLE %I RENAME CONSTRAINT %I TO %I', old, tbl || '_event_key_ts_key',
                       old || '_event_key_ts_key');
        EXECUTE format('ALTER INDEX IF EXISTS %I RENAME TO %I', tbl || '_ts_brin', old || '_ts_brin');
        -- the first 0002 of this project also made a (market, ts) b-tree on the plain tables: renamed too (the
        -- partitioned index below would take its name), and adopted by that index at the ATTACH
        EXECUTE format('ALTER INDEX IF EXISTS %I RENAME TO %I', tbl || '_market_ts', old || '_market_ts');
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)'
                       ' PARTITION BY RANGE (ts)', tbl, old);
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I UNIQUE (event_key, ts)', tbl, tbl || '_event_key_ts_key');
        EXECUTE format('CREATE INDEX %I ON %I (market, ts)', tbl || '_market_ts', tbl);
        EXECUTE format('CREATE INDEX %I ON %I USING brin (ts)', tbl || '_ts_brin', tbl);
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', tbl || '_default', tbl);
        EXECUTE format('SELECT min(ts), max(ts) FROM %I', old) INTO lo, hi;
        IF lo IS NULL THEN
            EXECUTE format('DROP TABLE %I', old);
        ELSE
            lo := to_timestamp(floor(extract(epoch FROM lo) / step) * step);
            hi := to_timestamp((floor(extract(epoch FROM hi) / step) + 1) * step);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', tbl, old, lo, hi);
        END IF;
    END LOOP;
END $$;
