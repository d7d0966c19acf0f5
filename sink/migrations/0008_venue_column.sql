-- Every event table gets a `venue` column (the venue the event came from: schemas.events Event.venue), both modes.
--
-- Existing rows: the column is added with the database's venue as a constant DEFAULT and the default is then dropped,
-- so PostgreSQL stores the value once in the catalogue (a "missing value", PostgreSQL >= 11) instead of rewriting
-- any row: instant on tables of any size, partitioned (0005) or hypertables. That venue is {{venue}} (the
-- configuration's venue.name, passed by sink.migrate), checked against the venues of the `markets` table; without
-- it, the one venue `markets` names. A table with rows and no known venue, or a configuration that disagrees with
-- `markets`, stops the migration with an error (nothing changed). No default remains: every writer names the venue.
--
-- The unique key that absorbs replays becomes (event_key, ts, venue) (market_lifecycle: (event_key, venue)): event
-- keys are derived by each venue's own rules, so two venues could in principle produce the same key at the same
-- time, and the old key would silently drop the second venue's event. A replay of an event carries the same venue,
-- so it is absorbed as before. The new unique index is BUILT here (every partition, every chunk; TimescaleDB's
-- compressed chunks are decompressed and compressed again, below): the migration's cost grows with the database
-- (stop the sinks first; see docs/data-layer.md, "Upgrading a database made before the venue column").
--
-- book_snapshot_at / book_at / top_of_book_at take an optional venue (NULL: the market's rows of whichever venue
-- holds the latest snapshot at or before the time; deltas are always taken from the snapshot's venue), and the
-- top_of_book view gains a venue column. Plain mode's bars_1m gains a venue column too (at the end of this file).
DO $$
DECLARE
    wanted text := {{venue}};
    known  text[];
    v      text;
    tbl    text;
    filled boolean;
BEGIN
    SELECT array_agg(DISTINCT m.venue ORDER BY m.venue) INTO known FROM markets m;
    IF wanted IS NOT NULL AND known IS NOT NULL AND known <> ARRAY[wanted] THEN
        RAISE EXCEPTION 'migration 0008: the configured venue is % but the markets table holds venue(s) %: '
                        'migrate with the venue these rows came from', wanted, known;
    END IF;
    v := coalesce(wanted, CASE WHEN cardinality(known) = 1 THEN known[1] END);
    FOREACH tbl IN ARRAY ARRAY['orderbook_snapshots', 'orderbook_deltas', 'trades', 'tickers', 'market_lifecycle',
                               'coverage_gaps'] LOOP
        IF EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = tbl::regclass AND attname = 'venue' AND NOT attisdropped) THEN
            CONTINUE;
        END IF;
        IF v IS NULL THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I)', tbl) INTO filled;
            IF filled THEN
                RAISE EXCEPTION 'migration 0008: table % has rows but their venue is unknown (the markets table '
                                'names %): migrate with venue.name configured', tbl, coalesce(known::text, 'none');
            END IF;
        END IF;
        EXECUTE format('ALTER TABLE %I ADD COLUMN venue text NOT NULL DEFAULT %L', tbl, coalesce(v, ''));
        EXECUTE format('ALTER TABLE %I ALTER COLUMN venue DROP DEFAULT', tbl);
    END LOOP;
END $$;

-- The unique keys. TimescaleDB checks a unique key against compressed rows only in chunks compressed while the key
-- existed (tried on TimescaleDB 2.23: a key added over compressed chunks let every replay into them in): the
-- compressed chunks are decompressed for the swap and compressed again after it, in this transaction.
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
    FOREACH tbl IN ARRAY ARRAY['orderbook_snapshots', 'orderbook_deltas', 'trades', 'tickers', 'coverage_gaps'] LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT IF EXISTS %I', tbl, tbl || '_event_key_ts_key');
        IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = tbl || '_event_key_ts_venue_key') THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I UNIQUE (event_key, ts, venue)', tbl,
                           tbl || '_event_key_ts_venue_key');
        END IF;
    END LOOP;
    ALTER TABLE market_lifecycle DROP CONSTRAINT IF EXISTS market_lifecycle_event_key_key;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'market_lifecycle_event_key_venue_key') THEN
        ALTER TABLE market_lifecycle ADD CONSTRAINT market_lifecycle_event_key_venue_key UNIQUE (event_key, venue);
    END IF;
    FOREACH chunk IN ARRAY compressed LOOP
        PERFORM compress_chunk(chunk);
    END LOOP;
END $$;

-- The book functions of 0006 with a venue argument (the old two-argument forms would make calls ambiguous).
DROP VIEW IF EXISTS top_of_book;
DROP FUNCTION IF EXISTS top_of_book_at(text, timestamptz);
DROP FUNCTION IF EXISTS book_at(text, timestamptz);
DROP FUNCTION IF EXISTS book_snapshot_at(text, timestamptz);

-- The snapshot book_at(M, T, V) starts from: no row when M has no snapshot at or before T (the book is unknown).
-- Ties (same ts): the greatest event_key in code-point order, then the greatest venue.
CREATE OR REPLACE FUNCTION book_snapshot_at(p_market text, p_at timestamptz, p_venue text DEFAULT NULL)
RETURNS TABLE (venue text, ts timestamptz, event_key text, after_keys text[])
LANGUAGE sql STABLE AS $$
    SELECT s.venue, s.ts, s.event_key, s.after_keys
    FROM orderbook_snapshots s
    WHERE s.market = p_market AND s.ts <= p_at AND (p_venue IS NULL OR s.venue = p_venue)
    ORDER BY s.ts DESC, s.event_key COLLATE "C" DESC, s.venue COLLATE "C" DESC
    LIMIT 1
$$;

-- One row per price level of the book of p_market (of venue p_venue) at p_at: side ('yes' | 'no': the two bid
-- ladders), price (dollars), size (contracts). Best first: yes levels by price descending, then no levels.
CREATE OR REPLACE FUNCTION book_at(p_market text, p_at timestamptz, p_venue text DEFAULT NULL)
RETURNS TABLE (side text, price numeric, size numeric)
LANGUAGE sql STABLE AS $$
    WITH base AS (
        SELECT s.venue, s.ts, s.after_keys, s.yes_prices, s.yes_counts, s.no_prices, s.no_counts
        FROM orderbook_snapshots s
        WHERE s.market = p_market AND s.ts <= p_at AND (p_venue IS NULL OR s.venue = p_venue)
        ORDER BY s.ts DESC, s.event_key COLLATE "C" DESC, s.venue COLLATE "C" DESC
        LIMIT 1
    ), parts AS (
        SELECT 'yes'::text AS side, l.price, l.size
        FROM base, unnest(base.yes_prices, base.yes_counts) AS l(price, size)
        UNION ALL
        SELECT 'no'::text, l.price, l.size
        FROM base, unnest(base.no_prices, base.no_counts) AS l(price, size)
        UNION ALL
        SELECT d.side, d.price, d.delta
        FROM base JOIN orderbook_deltas d
          ON d.market = p_market AND d.venue = base.venue AND d.ts >= base.ts AND d.ts <= p_at
         AND (d.ts > base.ts OR d.event_key = ANY (base.after_keys))
    )
    SELECT p.side, trim_scale(p.price), trim_scale(sum(p.size))
    FROM parts p
    GROUP BY p.side, trim_scale(p.price)
    HAVING sum(p.size) <> 0
    ORDER BY p.side DESC, trim_scale(p.price) DESC
$$;

-- The best level of each ladder of the book at p_at (one row; none without a snapshot). The books hold bids only:
-- the best yes ask is 1 - the best no bid (dollars), with the no bid's size. A NULL side is empty.
CREATE OR REPLACE FUNCTION top_of_book_at(p_market text, p_at timestamptz, p_venue text DEFAULT NULL)
RETURNS TABLE (yes_bid numeric, yes_bid_size numeric, yes_ask numeric, yes_ask_size numeric, no_bid numeric,
               no_bid_size numeric)
LANGUAGE sql STABLE AS $$
    WITH s AS (SELECT * FROM book_snapshot_at(p_market, p_at, p_venue)),
         b AS (SELECT bk.* FROM s CROSS JOIN LATERAL book_at(p_market, p_at, s.venue) AS bk)
    SELECT y.price, y.size, 1 - n.price, n.size, n.price, n.size
    FROM s
    LEFT JOIN LATERAL (SELECT price, size FROM b WHERE side = 'yes' AND size > 0 ORDER BY price DESC LIMIT 1) y
           ON true
    LEFT JOIN LATERAL (SELECT price, size FROM b WHERE side = 'no' AND size > 0 ORDER BY price DESC LIMIT 1) n
           ON true
$$;

-- Top of book over time: one row per (venue, market, ts) at which the market's book changed (a delta or a snapshot
-- row), with the top of the book after every event at that ts. Computed on read: always filter by market (and venue
-- where a market name is not unique across venues) and a time range, which the (market, ts) indexes serve.
CREATE VIEW top_of_book AS
SELECT e.venue, e.market, e.ts, t.yes_bid, t.yes_bid_size, t.yes_ask, t.yes_ask_size, t.no_bid, t.no_bid_size
FROM (SELECT venue, market, ts FROM orderbook_deltas UNION SELECT venue, market, ts FROM orderbook_snapshots) AS e
CROSS JOIN LATERAL top_of_book_at(e.market, e.ts, e.venue) AS t;

-- Plain PostgreSQL's bars_1m (0007, a materialized view) per venue and market: recreated with the same columns plus
-- `venue` (first) and its unique index on (venue, market, bucket), so `REFRESH MATERIALIZED VIEW CONCURRENTLY
-- bars_1m` keeps working. A view that had been refreshed is filled again here (one refresh's cost: a scan of
-- trades); one never refreshed stays empty. Nothing to do without it (TimescaleDB mode: see its own bars).
DO $$
DECLARE
    populated boolean;
BEGIN
    SELECT c.relispopulated INTO populated FROM pg_class c WHERE c.oid = to_regclass('bars_1m') AND c.relkind = 'm';
    IF populated IS NULL THEN
        RETURN;
    END IF;
    DROP MATERIALIZED VIEW bars_1m;
    CREATE MATERIALIZED VIEW bars_1m AS
    SELECT venue,
           market,
           date_bin(interval '1 minute', ts, timestamptz 'epoch') AS bucket,
           (array_agg(yes_price ORDER BY ts, event_key COLLATE "C"))[1] AS open,
           max(yes_price) AS high,
           min(yes_price) AS low,
           (array_agg(yes_price ORDER BY ts DESC, event_key COLLATE "C" DESC))[1] AS close,
           sum(count) AS volume,
           count(*) AS trades
    FROM trades
    GROUP BY venue, market, date_bin(interval '1 minute', ts, timestamptz 'epoch')
    WITH NO DATA;
    CREATE UNIQUE INDEX bars_1m_venue_market_bucket ON bars_1m (venue, market, bucket);
    IF populated THEN
        REFRESH MATERIALIZED VIEW bars_1m;
    END IF;
END $$;
