-- Snapshots get their position in the market's delta stream (schemas.events.BookSnapshot): ts becomes the venue
-- time the gatherer placed the snapshot at, and after_keys lists the deltas at exactly that time that FOLLOW it.
-- sink/book.py rebuilds a book at any time from these two columns.
ALTER TABLE orderbook_snapshots ADD COLUMN IF NOT EXISTS after_keys text[] NOT NULL DEFAULT '{}';

-- Windows in which a gatherer may have missed venue messages (schemas.events.Gap): a seq skip, a connection that
-- was down, a subscription the venue ended. Not venue events: a coverage record for users and `mdpipe verify`
-- (a loss inside windows of every gatherer is a reported loss). A few rows per outage: a plain table.
CREATE TABLE IF NOT EXISTS coverage_gaps (
    ts          timestamptz NOT NULL,   -- the window's start (= from_at, millisecond precision)
    market      text        NOT NULL,   -- first market covered, '*' for all markets
    event_key   text        NOT NULL,
    gatherer    text        NOT NULL,
    received_at timestamptz NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    conn        bigint      NOT NULL,   -- the gatherer's connection number
    kind        text        NOT NULL,   -- seq | first_seq | down | resubscribe | rejected
    channel     text        NOT NULL DEFAULT '',  -- venue channel ('' = every channel of the connection)
    markets     text[]      NOT NULL,   -- markets covered ('{*}' = all)
    from_at     timestamptz NOT NULL,   -- gatherer receive clock
    to_at       timestamptz NOT NULL,
    sid         bigint,
    missed      bigint,                 -- messages the venue's seq says were skipped, when known
    CONSTRAINT coverage_gaps_event_key_ts_key UNIQUE (event_key, ts)
);
CREATE INDEX IF NOT EXISTS coverage_gaps_from_at ON coverage_gaps (from_at);
