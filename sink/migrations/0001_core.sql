-- Core schema of the sink: offsets stored with the data, market reference data, one table per event type.
-- Every event table: ts (venue time), market, event_key, gatherer (winning copy), received_at (its receive time),
-- loaded_at (when the sink committed it), then one column per Event field with the field's name.
-- Prices and sizes are numeric (exact), times timestamptz. UNIQUE (event_key, ts) absorbs re-deliveries.

CREATE TABLE IF NOT EXISTS sink_offsets (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

CREATE TABLE IF NOT EXISTS markets (
    ticker                text        PRIMARY KEY,
    venue                 text        NOT NULL,
    event_ticker          text        NOT NULL DEFAULT '',
    market_id             text        NOT NULL DEFAULT '',
    title                 text        NOT NULL DEFAULT '',
    status                text        NOT NULL DEFAULT '',
    open_time             timestamptz,
    close_time            timestamptz,
    price_level_structure text        NOT NULL DEFAULT '',
    price_ranges          jsonb,
    updated_at            timestamptz NOT NULL,
    updated_ns            bigint      NOT NULL DEFAULT 0,  -- exact MarketRef.updated_ns: newest update wins
    loaded_at             timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE IF NOT EXISTS orderbook_snapshots (
    ts          timestamptz NOT NULL,
    market      text        NOT NULL,
    event_key   text        NOT NULL,
    gatherer    text        NOT NULL,
    received_at timestamptz NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    market_id   text        NOT NULL DEFAULT '',
    yes_prices  numeric[]   NOT NULL,
    yes_counts  numeric[]   NOT NULL,
    no_prices   numeric[]   NOT NULL,
    no_counts   numeric[]   NOT NULL,
    CONSTRAINT orderbook_snapshots_event_key_ts_key UNIQUE (event_key, ts)
);

CREATE TABLE IF NOT EXISTS orderbook_deltas (
    ts          timestamptz NOT NULL,
    market      text        NOT NULL,
    event_key   text        NOT NULL,
    gatherer    text        NOT NULL,
    received_at timestamptz NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    market_id   text        NOT NULL DEFAULT '',
    side        text        NOT NULL CHECK (side IN ('yes', 'no')),
    price       numeric     NOT NULL,
    delta       numeric     NOT NULL,
    CONSTRAINT orderbook_deltas_event_key_ts_key UNIQUE (event_key, ts)
);

CREATE TABLE IF NOT EXISTS trades (
    ts              timestamptz NOT NULL,
    market          text        NOT NULL,
    event_key       text        NOT NULL,
    gatherer        text        NOT NULL,
    received_at     timestamptz NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    trade_id        text        NOT NULL,
    yes_price       numeric     NOT NULL,
    no_price        numeric     NOT NULL,
    count           numeric     NOT NULL,
    taker_side      text        NOT NULL DEFAULT '',
    taker_book_side text        NOT NULL DEFAULT '',
    is_block_trade  boolean     NOT NULL DEFAULT false,
    CONSTRAINT trades_event_key_ts_key UNIQUE (event_key, ts)
);

CREATE TABLE IF NOT EXISTS tickers (
    ts                   timestamptz NOT NULL,
    market               text        NOT NULL,
    event_key            text        NOT NULL,
    gatherer             text        NOT NULL,
    received_at          timestamptz NOT NULL,
    loaded_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    market_id            text        NOT NULL DEFAULT '',
    price                numeric,
    yes_bid              numeric,
    yes_ask              numeric,
    yes_bid_size         numeric,
    yes_ask_size         numeric,
    last_trade_size      numeric,
    volume               numeric,
    open_interest        numeric,
    dollar_volume        bigint,
    dollar_open_interest bigint,
    CONSTRAINT tickers_event_key_ts_key UNIQUE (event_key, ts)
);

CREATE TABLE IF NOT EXISTS market_lifecycle (
    ts               timestamptz NOT NULL,
    market           text        NOT NULL,
    event_key        text        NOT NULL,
    gatherer         text        NOT NULL,
    received_at      timestamptz NOT NULL,
    loaded_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    event_type       text        NOT NULL,
    open_ts          timestamptz,
    close_ts         timestamptz,
    determination_ts timestamptz,
    settled_ts       timestamptz,
    result           text,
    settlement_value numeric,
    is_deactivated   boolean,
    details          jsonb,
    CONSTRAINT market_lifecycle_event_key_ts_key UNIQUE (event_key, ts)
);
