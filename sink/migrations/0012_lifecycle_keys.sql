-- A lifecycle event that carries no venue time can reach the dedup stage as copies with different keys (a venue may key
-- such a message by its position against the messages around it, and copies see different ones), and which
-- copy wins decides the row's event_key: a dedup replay whose first copy is another copy than the live run's would
-- store the event a second time under another key. So a row keeps EVERY key of its event (the winner's keys, and the
-- keys later copies brought: alias records), and the sink skips a lifecycle row any of whose keys a row of its market
-- already has (sink/lifecycle.py). Existing rows are known by their event_key.
ALTER TABLE market_lifecycle ADD COLUMN IF NOT EXISTS keys text[] NOT NULL DEFAULT '{}';
UPDATE market_lifecycle SET keys = ARRAY[event_key] WHERE keys = '{}';
CREATE INDEX IF NOT EXISTS market_lifecycle_keys ON market_lifecycle USING gin (keys);
