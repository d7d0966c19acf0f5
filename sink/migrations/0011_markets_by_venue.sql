-- The markets table keyed by (venue, ticker) instead of ticker (both modes: markets is a plain table in each).
-- A market name may exist at two venues (each venue names its markets by its own rules), and one deployment loads
-- several venues' reference data into one table: with the old key the second venue's market overwrote the first's
-- row (the upsert set venue = EXCLUDED.venue). Every existing row already has its venue (NOT NULL since 0001), so
-- the rows stay as they are and only the key moves: the primary key is rebuilt on (venue, ticker) (one index build
-- over the table: a few rows per market). The sink's upsert conflicts on (venue, ticker) from this version on: stop
-- the sinks of older versions before migrating (their ON CONFLICT (ticker) finds no matching key and fails).
DO $$
DECLARE
    old_key text;
BEGIN
    SELECT c.conname INTO old_key FROM pg_constraint c
    WHERE c.conrelid = 'markets'::regclass AND c.contype = 'p';
    IF old_key IS NOT NULL THEN
        EXECUTE format('ALTER TABLE markets DROP CONSTRAINT %I', old_key);
    END IF;
END $$;
ALTER TABLE markets ADD CONSTRAINT markets_pkey PRIMARY KEY (venue, ticker);
