-- pgbench script: the textbook hold transaction, the raw-SQL ceiling of a seat hold. Lock the
-- seat row, mark it held, commit; nothing of onsale's own bookkeeping (no hold row, no change
-- log, no event counter). Every headline figure in BENCHMARKS.md is set beside this one, so a
-- bottleneck of onsale's own shows instead of hiding in the baseline.
--
-- Variables (pgbench -D): first_seat, clients (= -c), n (start at 0), hot (1: every client asks
-- for first_seat; 0: every transaction asks for a seat nobody else asks for).
\if :hot
\set seat :first_seat
\else
\set seat :first_seat + :n * :clients + :client_id
\set n :n + 1
\endif
BEGIN;
SELECT status FROM seats WHERE id = :seat FOR UPDATE;
UPDATE seats SET status = 'HELD', version = version + 1 WHERE id = :seat AND status = 'AVAILABLE';
COMMIT;
