-- Puts the ceiling event back to its seeded state: every seat AVAILABLE, no holds, no
-- changes, seq 0 (psql -v event_id=N -f reset.sql).
\set ON_ERROR_STOP on
BEGIN;
DELETE FROM hold_seats WHERE hold_id IN (SELECT id FROM holds WHERE event_id = :event_id);
DELETE FROM holds WHERE event_id = :event_id;
DELETE FROM seat_changes WHERE event_id = :event_id;
UPDATE seats SET status = 'AVAILABLE', hold_id = NULL, hold_expires_at_ms = NULL,
                 booking_id = NULL, version = 0
WHERE event_id = :event_id;
UPDATE events SET seq = 0 WHERE id = :event_id;
COMMIT;
VACUUM ANALYZE seats;
VACUUM ANALYZE holds;
VACUUM ANALYZE hold_seats;
VACUUM ANALYZE seat_changes;
VACUUM ANALYZE events;
