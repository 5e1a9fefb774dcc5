-- Seeds one event of :seats seats for the raw-SQL ceiling (psql -v seats=N -f seed.sql).
-- Prints "event_id first_seat". Same columns and values as createEvent would write.
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO events (name, venue, starts_at_ms, seq, created_at_ms)
VALUES ('raw-sql ceiling', 'pgbench', (extract(epoch from now() + interval '30 days') * 1000)::bigint,
        0, (extract(epoch from now()) * 1000)::bigint)
RETURNING id AS event_id \gset
INSERT INTO seats (event_id, section, row_label, number, price_cents, position, status, version)
SELECT :event_id, 'Floor', 'R' || ((n - 1) / 100 + 1), (n - 1) % 100 + 1, 5000, n - 1, 'AVAILABLE', 0
FROM generate_series(1, :seats) AS n;
COMMIT;
SELECT :event_id AS event_id, min(id) AS first_seat FROM seats WHERE event_id = :event_id \gset
\echo :event_id :first_seat
