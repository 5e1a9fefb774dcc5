-- pgbench script: the statements onsale sends to PostgreSQL for one `holdSeats` of one seat
-- (src/booking/holds.rs hold_seats / create_hold, src/realtime/log.rs append_locking_event), without HTTP,
-- GraphQL, the ORM or the seat gate. The answer is built from what the transaction wrote,
-- so nothing is read back. Under load several holds of one event share one transaction (group
-- commit, src/db/group.rs), each in its own savepoint; this script is a batch of one, the
-- most a single hold can cost. tests/api/sql_mirror.rs checks that onsale still sends exactly
-- these statements, in this order.
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
SET LOCAL lock_timeout = '500ms';
SET LOCAL statement_timeout = '2500ms';
-- the batch takes the event's row lock first (src/db/group.rs begin_batch)
SELECT id FROM events WHERE id = :event_id FOR UPDATE;
SAVEPOINT member;
SELECT id, event_id, status, hold_id, hold_expires_at_ms, version,
       CASE WHEN NOT blocked AND (status = 'AVAILABLE'
              OR (status = 'HELD' AND hold_expires_at_ms <= (extract(epoch from clock_timestamp()) * 1000)::bigint))
            THEN 1 ELSE 0 END AS free,
       CASE WHEN status = 'HELD' THEN 1 ELSE 0 END AS reclaim
FROM seats WHERE id IN (:seat) ORDER BY id FOR UPDATE \gset l_
\if :l_free
-- the per-user limit (MAX_HOLDS_PER_USER): every pgbench client is its own user
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
UPDATE events SET seq = seq + 1 WHERE id = :event_id
RETURNING id, name, venue, starts_at_ms, seq, created_at_ms, status, sales_start_at_ms, sales_end_at_ms,
          max_seats_per_order, max_seats_per_buyer, max_hold_extensions \gset e_
INSERT INTO seat_changes (event_id, seq, seat_id, status, hold_expires_at_ms, created_at_ms)
VALUES (:event_id, :e_seq, :seat, 'HELD',
        (extract(epoch from clock_timestamp()) * 1000)::bigint + :ttl_ms,
        (extract(epoch from clock_timestamp()) * 1000)::bigint)
RETURNING id;
RELEASE SAVEPOINT member;
-- the batch checks its transaction is alive before COMMIT (an aborted one would COMMIT as a
-- silent ROLLBACK)
SELECT 1;
COMMIT;
\else
-- someone else got the seat between the cheap check and the lock (SEAT_UNAVAILABLE)
ROLLBACK;
\endif
\endif
