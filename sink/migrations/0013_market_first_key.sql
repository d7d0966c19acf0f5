-- One b-tree per event table instead of two. Until now each of the four high-volume tables carried the unique key
-- that absorbs replays, (event_key, ts, venue), and a (market, ts) index for per-market reads: every row paid two
-- b-tree inserts, one of them at a random place (event keys are hashes) in an index that grows all day. One unique
-- key (market, ts, event_key, venue) does both jobs: it absorbs a replay (a replayed event carries the same market,
-- time, key and venue) and serves every per-market read in time order (book_at, bars, the archive), with inserts at
-- the right edge of each market's range. It is also the dedup stage's own identity (market, event_key): two events
-- of different markets with the same key and time are two rows now, where the old key kept only the first.
-- Measured in docs/data-layer.md ("What the two b-trees of each event partition cost").
--
-- Both modes: plain partitioned tables (the constraint and the index are partitioned: every partition follows) and
-- TimescaleDB hypertables (every chunk follows; compressed chunks are decompressed for the swap and compressed
-- again after it, as in 0008, because TimescaleDB checks a unique key against compressed rows only in chunks
-- compressed while the key existed). The new key is BUILT over every row: the migration's cost grows with the
-- database (stop the sinks first; see docs/data-layer.md). market_lifecycle and coverage_gaps keep their keys
-- (a few rows per market or outage).
DO $$
DECLARE
    tbl        text;
    compressed regclass[] := '{}';
    chunk      regclass;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE $q$SELECT coalesce(array_agg(format('%I.%I', chunk_schema, chunk_name)::regclass), '{}')
                   FROM timescaledb_information.chunks
                   WHERE is_compressed AND hypertable_schema = current_schema()
                     AND hypertable_name IN ('orderbook_snapshots', 'orderbook_deltas', 'trades', 'tickers')$q$
            INTO compressed;
        FOREACH chunk IN ARRAY compressed LOOP
            PERFORM decompress_chunk(chunk);
        END LOOP;
    END IF;
    FOREACH tbl IN ARRAY ARRAY['orderbook_snapshots', 'orderbook_deltas', 'trades', 'tickers'] LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT IF EXISTS %I', tbl, tbl || '_event_key_ts_venue_key');
        EXECUTE format('DROP INDEX IF EXISTS %I', tbl || '_market_ts');
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conrelid = tbl::regclass AND conname = tbl || '_market_ts_event_key_venue_key') THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I UNIQUE (market, ts, event_key, venue)', tbl,
                           tbl || '_market_ts_event_key_venue_key');
        END IF;
    END LOOP;
    FOREACH chunk IN ARRAY compressed LOOP
        PERFORM compress_chunk(chunk);
    END LOOP;
END $$;
