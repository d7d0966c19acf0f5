-- Order books at any time, in the database (both modes). The same rule as sink/book.py, which `mdpipe verify`
-- proves against the venue's own books: a snapshot row with ts S and after_keys A holds every delta of its market
-- with ts < S and those with ts = S whose event_key is not in A. The book of market M at time T is the snapshot
-- with the greatest (ts, event_key) at or before T plus every delta with ts <= T it does not hold. Deltas add
-- signed sizes to one level; a level whose total is 0 is absent. Prices and sizes come out with trailing zeros
-- trimmed (0.5, not 0.5000). Reads use the (market, ts) indexes of orderbook_snapshots and orderbook_deltas.

-- The snapshot book_at(M, T) starts from: no row when M has no snapshot at or before T (the book is unknown).
CREATE OR REPLACE FUNCTION book_snapshot_at(p_market text, p_at timestamptz)
RETURNS TABLE (ts timestamptz, event_key text, after_keys text[])
LANGUAGE sql STABLE AS $$
    SELECT s.ts, s.event_key, s.after_keys
    FROM orderbook_snapshots s
    WHERE s.market = p_market AND s.ts <= p_at
    ORDER BY s.ts DESC, s.event_key COLLATE "C" DESC
    LIMIT 1
$$;

-- One row per price level of the book of p_market at p_at: side ('yes' | 'no': the two bid ladders), price
-- (dollars), size (contracts). Best first: yes levels by price descending, then no levels by price descending.
CREATE OR REPLACE FUNCTION book_at(p_market text, p_at timestamptz)
RETURNS TABLE (side text, price numeric, size numeric)
LANGUAGE sql STABLE AS $$
    WITH base AS (
        SELECT s.ts, s.after_keys, s.yes_prices, s.yes_counts, s.no_prices, s.no_counts
        FROM orderbook_snapshots s
        WHERE s.market = p_market AND s.ts <= p_at
        ORDER BY s.ts DESC, s.event_key COLLATE "C" DESC
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
          ON d.market = p_market AND d.ts >= base.ts AND d.ts <= p_at
         AND (d.ts > base.ts OR d.event_key = ANY (base.after_keys))
    )
    SELECT p.side, trim_scale(p.price), trim_scale(sum(p.size))
    FROM parts p
    GROUP BY p.side, trim_scale(p.price)
    HAVING sum(p.size) <> 0
    ORDER BY p.side DESC, trim_scale(p.price) DESC
$$;

-- The best level of each ladder of p_market's book at p_at (one row; none without a snapshot). Kalshi books hold
-- bids only: the best yes ask is 1 - the best no bid (dollars), with the no bid's size. A NULL side is empty.
CREATE OR REPLACE FUNCTION top_of_book_at(p_market text, p_at timestamptz)
RETURNS TABLE (yes_bid numeric, yes_bid_size numeric, yes_ask numeric, yes_ask_size numeric, no_bid numeric,
               no_bid_size numeric)
LANGUAGE sql STABLE AS $$
    WITH b AS (SELECT * FROM book_at(p_market, p_at))
    SELECT y.price, y.size, 1 - n.price, n.size, n.price, n.size
    FROM book_snapshot_at(p_market, p_at) AS s
    LEFT JOIN LATERAL (SELECT price, size FROM b WHERE side = 'yes' AND size > 0 ORDER BY price DESC LIMIT 1) y
           ON true
    LEFT JOIN LATERAL (SELECT price, size FROM b WHERE side = 'no' AND size > 0 ORDER BY price DESC LIMIT 1) n
           ON true
$$;

-- Top of book over time: one row per (market, ts) at which the market's book changed (a delta or a snapshot row),
-- with the top of the book after every event at that ts. Computed on read: always filter by market and a time
-- range (WHERE market = ... AND ts >= ... AND ts < ...), which the (market, ts) indexes serve.
CREATE OR REPLACE VIEW top_of_book AS
SELECT e.market, e.ts, t.yes_bid, t.yes_bid_size, t.yes_ask, t.yes_ask_size, t.no_bid, t.no_bid_size
FROM (SELECT market, ts FROM orderbook_deltas UNION SELECT market, ts FROM orderbook_snapshots) AS e
CROSS JOIN LATERAL top_of_book_at(e.market, e.ts) AS t;
