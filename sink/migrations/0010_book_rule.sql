-- The book rule travels with the rows (both modes): orderbook_deltas gets
--   replaces boolean: false = `delta` is ADDED to the level's size (deltas commute); true = `delta` is the level's
--                     NEW size (a venue that sends levels' sizes), so the order of one level's deltas matters;
--   ordinal integer:  the order of deltas sharing a ts (ascending; the venue's order, set by the venue's normaliser;
--                     0 where order does not matter).
-- Existing rows were all written by additive venues before this column existed: they get false / 0, as constant
-- DEFAULTs, which PostgreSQL stores once in the catalogue (no table rewrite, on plain, partitioned and hypertables;
-- tests/tsdb/test_venue_upgrade.py runs it over compressed chunks). The defaults stay, so a writer that does not name
-- the columns writes additive deltas.
--
-- book_at (same signature as 0008's, so CREATE OR REPLACE keeps top_of_book_at and the top_of_book view) applies the
-- rule of sink/book.py: the book of M at T is the snapshot with the greatest (ts, event_key) at or before T plus the
-- deltas with ts <= T it does not hold, in venue order: (ts, ordinal, event_key in code-point order). Per level:
-- when some of those deltas replace, the level's size is the LAST replacing delta's size plus the additive deltas
-- after it; otherwise the snapshot's size plus every additive delta. A level whose size is 0 is absent.
ALTER TABLE orderbook_deltas ADD COLUMN IF NOT EXISTS replaces boolean NOT NULL DEFAULT false;
ALTER TABLE orderbook_deltas ADD COLUMN IF NOT EXISTS ordinal integer NOT NULL DEFAULT 0;

-- One row per price level of the book of p_market (of venue p_venue; NULL: the venue of the latest snapshot) at p_at:
-- side ('yes' | 'no': the two bid ladders), price (dollars), size (contracts). Best first: yes levels by price
-- descending, then no levels.
CREATE OR REPLACE FUNCTION book_at(p_market text, p_at timestamptz, p_venue text DEFAULT NULL)
RETURNS TABLE (side text, price numeric, size numeric)
LANGUAGE sql STABLE AS $$
    WITH base AS (
        SELECT s.venue, s.ts, s.after_keys, s.yes_prices, s.yes_counts, s.no_prices, s.no_counts
        FROM orderbook_snapshots s
        WHERE s.market = p_market AND s.ts <= p_at AND (p_venue IS NULL OR s.venue = p_venue)
        ORDER BY s.ts DESC, s.event_key COLLATE "C" DESC, s.venue COLLATE "C" DESC
        LIMIT 1
    ), deltas AS NOT MATERIALIZED (  -- the deltas the snapshot does not hold, up to p_at (read where used)
        SELECT d.side, trim_scale(d.price) AS price, d.delta, d.replaces, d.ts, d.ordinal,
               d.event_key COLLATE "C" AS event_key
        FROM base JOIN orderbook_deltas d
          ON d.market = p_market AND d.venue = base.venue AND d.ts >= base.ts AND d.ts <= p_at
         AND (d.ts > base.ts OR d.event_key = ANY (base.after_keys))
    ), levels AS (  -- one pass (as 0008): per level, the sum of its additive deltas, whether one replaces, and the
        -- ts of its last replacing delta
        SELECT l.side, l.price, sum(l.delta) FILTER (WHERE NOT l.replaces) AS added, bool_or(l.replaces) AS replaced,
               max(l.ts) FILTER (WHERE l.replaces) AS last_ts
        FROM deltas l
        GROUP BY l.side, l.price
    ), last_set AS (  -- per replaced level, its last replacing delta in venue order (among those at its last_ts);
        -- read only when a level is replaced
        SELECT DISTINCT ON (r.side, r.price) r.side, r.price, r.delta, r.ts, r.ordinal, r.event_key
        FROM deltas r JOIN levels v ON v.replaced AND v.side = r.side AND v.price = r.price AND v.last_ts = r.ts
        WHERE r.replaces AND EXISTS (SELECT 1 FROM levels WHERE replaced)
        ORDER BY r.side, r.price, r.ordinal DESC, r.event_key DESC
    ), parts AS (
        SELECT 'yes'::text AS side, trim_scale(l.price) AS price, l.size
        FROM base, unnest(base.yes_prices, base.yes_counts) AS l(price, size)
        UNION ALL
        SELECT 'no'::text, trim_scale(l.price), l.size
        FROM base, unnest(base.no_prices, base.no_counts) AS l(price, size)
    )
    SELECT p.side, p.price, trim_scale(sum(p.size))
    FROM (
        SELECT b.side, b.price, b.size  -- the snapshot's levels no delta replaced
        FROM parts b
        WHERE NOT EXISTS (SELECT 1 FROM last_set x WHERE x.side = b.side AND x.price = b.price)
        UNION ALL
        SELECT l.side, l.price, l.added FROM levels l WHERE NOT l.replaced  -- levels only added to
        UNION ALL
        SELECT x.side, x.price, x.delta FROM last_set x  -- replaced levels: the last replacement ...
        UNION ALL
        SELECT a.side, a.price, a.delta  -- ... plus the additive deltas after it (read only where a level has both)
        FROM deltas a JOIN last_set x
          ON x.side = a.side AND x.price = a.price
         AND (x.ts, x.ordinal, x.event_key) < (a.ts, a.ordinal, a.event_key)
        WHERE NOT a.replaces AND EXISTS (SELECT 1 FROM levels WHERE replaced AND added IS NOT NULL)
    ) AS p
    GROUP BY p.side, p.price
    HAVING sum(p.size) <> 0
    ORDER BY p.side DESC, p.price DESC
$$;
