#!/usr/bin/env bash
# The raw-SQL ceiling: how many seat holds PostgreSQL itself can commit when nothing but
# SQL runs, with no HTTP, GraphQL, ORM or seat gate in the way. pgbench runs:
#
#   textbook-C   the textbook hold transaction (bench/sql/textbook.sql: lock the seat row,
#                update it, commit), every transaction a seat nobody else asks for, at each
#                client count C in CEILING_CLIENTS: THE ceiling every onsale figure is set
#                beside
#   onsale-C     onsale's own hold transaction (bench/sql/hold.sql mirrors
#                src/booking/holds.rs and src/realtime/log.rs, a batch of one), distinct seats
#   onsale-hot-C the same, every client asking for one seat: one wins, the rest find it taken
#
# usage: scripts/raw-sql-ceiling.sh [POSTGRES_URL]
#
# The URL comes from $1, else $PGURL, else $DATABASE_URL; the database must exist. The
# script migrates it (`onsale migrate`), seeds its own event and only ever touches that
# event's rows. lock_timeout is the server's default (500 ms), written into hold.sql.
# Settings (environment):
#   CEILING_CLIENTS="8 32"  client counts of the textbook runs
#   CLIENTS=32          concurrent pgbench clients of the onsale-* runs, each its own
#                       connection and user (32 is the server's default PostgreSQL pool)
#   THREADS=2           pgbench worker threads
#   DISTINCT_TXNS=200   transactions per client in distinct mode (seats = CLIENTS * this)
#   HOT_SECS=10         length of the hot mode
#   OUT_DIR=target/bench/raw-sql   where pgbench's output and per-transaction logs go
#   ONSALE_BIN=target/release/onsale  used for `migrate` if present, else `cargo run`
# Prints one result line per mode and, with JSON=1, a JSON summary line per mode that
# `onsale-bench summary` understands.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "[raw-sql] $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

URL=${1:-${PGURL:-${DATABASE_URL:-}}}
case $URL in
    postgres://* | postgresql://*) ;;
    *) die "give a postgres:// URL as the argument, or set PGURL or DATABASE_URL" ;;
esac
CLIENTS=${CLIENTS:-32}
CEILING_CLIENTS=${CEILING_CLIENTS:-8 32}
THREADS=${THREADS:-2}
DISTINCT_TXNS=${DISTINCT_TXNS:-200}
HOT_SECS=${HOT_SECS:-10}
OUT_DIR=${OUT_DIR:-target/bench/raw-sql}
ONSALE_BIN=${ONSALE_BIN:-target/release/onsale}
JSON=${JSON:-0}
HOLD_TTL_MS=600000

# pgbench and psql: on PATH, next to the test server's binaries, or installed with apt-get.
find_pg_tool() {
    local tool=$1 d
    for d in "${TEST_PG_BIN_DIR:-}" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -n "$d" ] && [ -x "$d/$tool" ]; then
            echo "$d/$tool"
            return 0
        fi
    done
    command -v "$tool" 2>/dev/null
}
PGBENCH=$(find_pg_tool pgbench || true)
PSQL=$(find_pg_tool psql || true)
if [ -z "$PGBENCH" ] || [ -z "$PSQL" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing pgbench and psql (postgresql-contrib, postgresql-client) with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            postgresql-client postgresql-contrib >&2
        PGBENCH=$(find_pg_tool pgbench || true)
        PSQL=$(find_pg_tool psql || true)
    fi
    [ -n "$PGBENCH" ] && [ -n "$PSQL" ] || die "pgbench and psql are needed (Debian: postgresql-contrib)"
fi

psql_q() { "$PSQL" "$URL" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

mkdir -p "$OUT_DIR"
log "$("$PGBENCH" --version)"

log "migrating"
if [ -x "$ONSALE_BIN" ]; then
    DATABASE_URL=$URL "$ONSALE_BIN" migrate >"$OUT_DIR/migrate.log" 2>&1 ||
        { cat "$OUT_DIR/migrate.log" >&2; die "onsale migrate failed"; }
else
    DATABASE_URL=$URL cargo run --release -q -p onsale -- migrate >"$OUT_DIR/migrate.log" 2>&1 ||
        { cat "$OUT_DIR/migrate.log" >&2; die "onsale migrate failed"; }
fi

MAX_CLIENTS=$CLIENTS
for c in $CEILING_CLIENTS; do [ "$c" -gt "$MAX_CLIENTS" ] && MAX_CLIENTS=$c; done
SEATS=$((MAX_CLIENTS * DISTINCT_TXNS))
read -r EVENT_ID FIRST_SEAT < <(psql_q -v seats="$SEATS" -f bench/sql/seed.sql)
[ -n "${FIRST_SEAT:-}" ] || die "seeding failed"
log "event $EVENT_ID with $SEATS seats from seat id $FIRST_SEAT"

# Latency quantiles (ms) from pgbench's per-transaction logs (3rd field: microseconds).
quantiles() {
    cat "$@" | awk '{print $3}' | sort -n | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "0 0 0 0"; exit }
            split("0.50 0.95 0.99", q, " ")
            out = ""
            for (i = 1; i <= 3; i++) {
                k = int(q[i] * NR + 0.999999); if (k < 1) k = 1; if (k > NR) k = NR
                out = out sprintf("%.3f ", v[k] / 1000)
            }
            printf "%s%.3f\n", out, v[NR] / 1000
        }'
}

# run_mode NAME SCRIPT CLIENTS HOT [pgbench length options...]
#   SCRIPT textbook: bench/sql/textbook.sql (lock the seat row, update it, commit)
#          hold:     bench/sql/hold.sql (onsale's own hold transaction)
run_mode() {
    local mode=$1 script=$2 clients=$3 hot=$4
    shift 4
    psql_q -v event_id="$EVENT_ID" -f bench/sql/reset.sql >/dev/null
    rm -f "$OUT_DIR/$mode".log*
    log "$mode: pgbench -c $clients -j $THREADS $* -f bench/sql/$script.sql"
    # A client whose statement hits statement_timeout (a long queue on the event's seq row)
    # is aborted by pgbench, where the server would retry; the others go on, so the run is
    # reported with the number of aborted clients.
    local rc=0
    "$PGBENCH" "$URL" -n -M prepared -c "$clients" -j "$THREADS" -r \
        -l --log-prefix="$OUT_DIR/$mode.log" \
        -D event_id="$EVENT_ID" -D first_seat="$FIRST_SEAT" -D clients="$clients" \
        -D hot="$hot" -D n=0 -D ttl_ms="$HOLD_TTL_MS" \
        "$@" -f "bench/sql/$script.sql" >"$OUT_DIR/$mode.txt" 2>&1 || rc=$?
    local aborted
    aborted=$(grep -c 'aborted in command' "$OUT_DIR/$mode.txt" || true)
    if ! grep -q '^number of transactions actually processed' "$OUT_DIR/$mode.txt"; then
        tail -n 20 "$OUT_DIR/$mode.txt" >&2
        die "pgbench ($mode) failed (exit $rc)"
    fi
    if [ "$aborted" -gt 0 ]; then
        log "$mode: $aborted client(s) aborted: $(grep -m1 'aborted in command' "$OUT_DIR/$mode.txt" | sed 's/.*ERROR: *//')"
    fi

    local tps txns secs holds held seq p50 p95 p99 max won others
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$OUT_DIR/$mode.txt")
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$OUT_DIR/$mode.txt")
    read -r holds held seq < <(psql_q -F ' ' -c "
        SELECT (SELECT count(*) FROM holds WHERE event_id = $EVENT_ID),
               (SELECT count(*) FROM seats WHERE event_id = $EVENT_ID AND status = 'HELD'),
               (SELECT seq FROM events WHERE id = $EVENT_ID)")
    read -r p50 p95 p99 max < <(quantiles "$OUT_DIR/$mode".log*)
    secs=$(awk -v n="$txns" -v t="$tps" 'BEGIN { if (t > 0) printf "%.3f", n / t; else print 0 }')
    # The textbook transaction writes no hold row: a won seat is a HELD seat.
    if [ "$script" = textbook ]; then won=$held; else won=$holds; fi
    others=$((txns - won))
    printf 'raw-sql %-16s %10.1f tx/s  %6s tx  p50 %7.2f ms  p95 %7.2f ms  p99 %7.2f ms  max %7.2f ms  won %s  HELD seats %s  seq %s  aborted clients %s\n' \
        "$mode" "$tps" "$txns" "$p50" "$p95" "$p99" "$max" "$won" "$held" "$seq" "$aborted"
    local ok=true
    if [ "$script" = hold ] && { [ "$held" != "$holds" ] || [ "$seq" != "$holds" ]; }; then ok=false; fi
    if [ "$hot" = 1 ] && [ "$won" != 1 ]; then ok=false; fi
    if [ "$hot" = 0 ] && [ "$won" != "$txns" ]; then ok=false; fi
    [ "$ok" = true ] || log "$mode: UNEXPECTED: $holds holds, $held HELD seats, seq $seq, $txns transactions"
    if [ "$JSON" = 1 ]; then
        local all_ok=$ok no_abort=true
        if [ "$aborted" -gt 0 ]; then all_ok=false no_abort=false; fi
        printf '{"scenario":"raw-sql-%s","label":"pgbench","ok":%s,"params":{"clients":%s,"script":"%s"},"sections":[{"name":"hold transaction","count":%s,"duration_s":%s,"throughput":%s,"p50_ms":%s,"p95_ms":%s,"p99_ms":%s,"max_ms":%s,"codes":{"OK":%s,"SEAT_UNAVAILABLE":%s,"CLIENT_ABORTED":%s}}],"metrics":{},"checks":[{"name":"won seats agree with the log","ok":%s,"detail":"%s won, %s holds, %s HELD, seq %s"},{"name":"no client aborted by statement_timeout","ok":%s,"detail":"%s aborted"}]}\n' \
            "$mode" "$all_ok" "$clients" "$script" "$txns" "$secs" "$tps" "$p50" "$p95" "$p99" "$max" \
            "$won" "$others" "$aborted" "$ok" "$won" "$holds" "$held" "$seq" "$no_abort" "$aborted"
    fi
}

# The ceiling: the textbook hold transaction at each client count (CEILING_CLIENTS).
for c in $CEILING_CLIENTS; do
    run_mode "textbook-$c" textbook "$c" 0 -t "$DISTINCT_TXNS"
done
# Beside it, onsale's own hold transaction (a batch of one) at CLIENTS.
run_mode "onsale-$CLIENTS" hold "$CLIENTS" 0 -t "$DISTINCT_TXNS"
run_mode "onsale-hot-$CLIENTS" hold "$CLIENTS" 1 -T "$HOT_SECS"
log "per-statement latencies: $OUT_DIR/*.txt"
