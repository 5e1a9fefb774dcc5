-- pgbench script: the statements onsale sends to PostgreSQL for one `holdSeats` of one seat
-- (src/booking/holds.rs hold_seats / create_hold, src/realtime/log.rs append), then the
-- numbering run that gives its change a seq (src/realtime/sequencer.rs), without HTTP,
-- GraphQL, the ORM or the seat gate. The answer is built from what the transaction wrote,
-- so nothing is read back. Under load one numbering run covers every hold of the event that
-- committed while the previous run was busy; here each hold runs its own, the most a single
-- hold can cost. tests/api/sql_mirror.rs checks that onsale still sends exactly these
-- statements, in this order.
--
-- Variables (pgbench -D): event_id, first_seat, clients (= -c), hot (1: every client asks
-- for first_seat; 0: every transaction asks for a seat nobody else asks for), n (start at 0:
-- a per-client counter; pgbench keeps a client's variables from one transaction to the next),
-- ttl_ms (hold TTL), lock_ms (lock_timeout).
\if :hot
\set seat :first_seat
\else
\set seat :first_seat + :n * :clients + :client_id
\set n :n + 1
\endif
\set hold_id random(1, 9000000000000000000)

-- the event: is it visible to the caller and on sale now (else NOT_FOUND / NOT_ON_SALE)?
SELECT id, name, venue, starts_at_ms, seq, created_at_ms, status, sales_start_at_ms, sales_end_at_ms,
       max_seats_per_order, max_seats_per_buyer, max_hold_extensions
FROM events WHERE id = :event_id LIMIT 1;
-- the cheap check without locks: a taken seat ends the request here (SEAT_UNAVAILABLE)
SELECT id, event_id, status, hold_id, hold_expires_at_ms, version,
       CASE WHEN NOT blocked AND (status = 'AVAILABLE'
              OR (status = 'HELD' AND hold_expires_at_ms <= (extract(epoch from clock_timestamp()) * 1000)::bigint))
            THEN 1 ELSE 0 END AS free
FROM seats WHERE id IN (:seat) \gset c_
\if :c_free
BEGIN;
-- the transaction's id (asked about if the COMMIT's answer is lost) and its bounds, in one
-- round trip (src/db/write.rs)
SELECT txid_current() AS xid, set_config('lock_timeout', '500ms', true),
       set_config('statement_timeout', '2500ms', true);
SELECT id, event_id, status, hold_id, hold_expires_at_ms, version,
       CASE WHEN NOT blocked AND (status = 'AVAILABLE'
              OR (status = 'HELD' AND hold_expires_at_ms <= (extract(epoch from clock_timestamp()) * 1000)::bigint))
            THEN 1 ELSE 0 END AS free,
       CASE WHEN status = 'HELD' THEN 1 ELSE 0 END AS reclaim
FROM seats WHERE id IN (:seat) ORDER BY id FOR UPDATE \gset l_
\if :l_free
-- the buyer's lock: one buyer's holds of an event go one at a time from here (per-buyer
-- limits); every pgbench client is its own buyer
SELECT pg_advisory_xact_lock(1, :client_id);
-- the per-user limit (MAX_HOLDS_PER_USER)
SELECT count(*) AS num_items FROM holds
WHERE user_id = 'pgbench-' || :client_id::text AND event_id = :event_id AND status = 'ACTIVE'
  AND expires_at_ms > (extract(epoch from clock_timestamp()) * 1000)::bigint;
INSERT INTO holds (id, event_id, user_id, status, expires_at_ms, total_cents, created_at_ms, updated_at_ms, extensions_used)
VALUES (:hold_id::text, :event_id, 'pgbench-' || :client_id::text, 'ACTIVE',
        (extract(epoch from clock_timestamp()) * 1000)::bigint + :ttl_ms, 5000,
        (extract(epoch from clock_timestamp()) * 1000)::bigint,
        (extract(epoch from clock_timestamp()) * 1000)::bigint, 0);
\if :l_reclaim
UPDATE hold_seats SET active = false WHERE seat_id IN (:seat) AND active = true;
\endif
INSERT INTO hold_seats (hold_id, seat_id, active) VALUES (:hold_id::text, :seat, true);
UPDATE seats SET status = 'HELD', hold_id = :hold_id::text,
                 hold_expires_at_ms = (extract(epoch from clock_timestamp()) * 1000)::bigint + :ttl_ms,
                 booking_id = NULL, version = version + 1
WHERE id IN (:seat) AND blocked = false
  AND (status = 'AVAILABLE'
       OR (status = 'HELD' AND hold_expires_at_ms <= (extract(epoch from clock_timestamp()) * 1000)::bigint));
-- the change, without a seq: no lock of the event's (src/realtime/log.rs append)
INSERT INTO seat_change_pending (event_id, seat_id, status, hold_expires_at_ms, created_at_ms)
VALUES (:event_id, :seat, 'HELD',
        (extract(epoch from clock_timestamp()) * 1000)::bigint + :ttl_ms,
        (extract(epoch from clock_timestamp()) * 1000)::bigint);
-- last: the event as committed now, kept from changing status until this commit (shared
-- with every other writer of the event)
SELECT id, name, venue, starts_at_ms, seq, created_at_ms, status, sales_start_at_ms, sales_end_at_ms,
       max_seats_per_order, max_seats_per_buyer, max_hold_extensions
FROM events WHERE id = :event_id LIMIT 1 FOR KEY SHARE;
COMMIT;
-- the numbering run, after the commit (src/realtime/sequencer.rs)
BEGIN;
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '5s';
SELECT seq FROM events WHERE id = :event_id FOR NO KEY UPDATE \gset n_
WITH moved AS (
    DELETE FROM seat_change_pending WHERE event_id = :event_id
    RETURNING id, seat_id, status, hold_expires_at_ms, created_at_ms
), numbered AS (
    INSERT INTO seat_changes (event_id, seq, seat_id, status, hold_expires_at_ms, created_at_ms)
    SELECT :event_id, :n_seq + row_number() OVER (ORDER BY id), seat_id, status, hold_expires_at_ms,
           created_at_ms
    FROM moved
    RETURNING seq, seat_id, status, hold_expires_at_ms
), counted AS (
    UPDATE events SET seq = :n_seq + (SELECT count(*) FROM numbered)
    WHERE id = :event_id AND EXISTS (SELECT 1 FROM numbered)
)
SELECT seq, seat_id, status, hold_expires_at_ms FROM numbered ORDER BY seq;
COMMIT;
\else
-- someone else got the seat between the cheap check and the lock (SEAT_UNAVAILABLE)
ROLLBACK;
\endif
\endif
