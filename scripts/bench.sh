#!/usr/bin/env bash
# Every benchmark on this machine, in one command: builds the release binaries, starts
# throwaway PostgreSQL and Redis (scripts/with-services.sh), runs the onsale-bench
# scenarios against onsale in each configuration, runs the raw-SQL ceiling, and prints a
# summary. Raw outputs go to target/bench/ (one directory per configuration, the JSON
# summary lines in results.jsonl, the Markdown summary in summary.md).
#
# usage: scripts/bench.sh
#
# Configurations (BENCH_CONFIGS, space-separated, default "gate nogate"):
#   gate    PostgreSQL + Redis, SEAT_GATE=on (the Redis seat gate in front of the database)
#   nogate  PostgreSQL + Redis, SEAT_GATE=off (plain database path; same Redis fan-out)
#   group   PostgreSQL + Redis, SEAT_GATE=on, GROUP_COMMIT=on (writes of one event batched)
#   nocache PostgreSQL + Redis, SEAT_GATE=on, SEATMAP_CACHE=off (every seat map read from
#           the database; the comparison for seatmap-read and storm-readers)
#   local   PostgreSQL, no Redis (in-process bus and gate)
#   sqlite  SQLite, no Redis
#   two     PostgreSQL + Redis, SEAT_GATE=on, TWO onsale instances on the same database and
#           Redis (each on its own port); runs only distinct, its workers alternating
#           between the instances (--also-url), checked through both
#   room    PostgreSQL + Redis, SEAT_GATE=on, RATE_LIMIT_USER_PER_SEC=0 (polling joinQueue
#           would hit the per-user limit); runs only waiting-room: admissions, then queued
#           booking (requestSeats) against direct holdSeats on one event
# Scenarios (BENCH_SCENARIOS, default all): hot-seat distinct mixed storm-readers fanout
# seatmap-read.
# Sizes (environment, defaults keep the whole run near five minutes on two cores):
#   HOT_USERS=1000  DISTINCT_SEATS=2000 DISTINCT_CONCURRENCY=50 DISTINCT_SECS=10
#   MIXED_SECS=10 MIXED_CONCURRENCY=50 MIXED_SEATS=2000
#   STORM_USERS=1000 STORM_READERS=20 STORM_PHASE_SECS=3
#   FANOUT_SUBSCRIBERS=1000 FANOUT_CHANGES=50
#   SEATMAP_SEATS=10000 SEATMAP_READERS=200 SEATMAP_SECS=10
#   SEATMAP_FORMS="post post-gzip get-etag" (seatmap-read once per form: plain POST, POST
#           with gzip, GET with a persisted query and If-None-Match)
#   SEATMAP_CHANGES=10 (per form, one more seatmap-read, tagged <form>-changes, with this
#           many seat changes per second that every reader must see within 1 s; 0 skips it)
#   RAW_SQL=1 (0 skips the pgbench ceiling; its own settings: see scripts/raw-sql-ceiling.sh)
# Exit code: 0 when every check passed, 1 when any scenario reported a violation or failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

log() { echo "[bench] $*" >&2; }

if [ "${1:-}" != --with-services ]; then
    log "building release binaries"
    cargo build --release -p onsale -p onsale-bench
    # Every headline figure on PostgreSQL's durable defaults (fsync, synchronous_commit on).
    PG_DURABLE=${PG_DURABLE:-1} exec scripts/with-services.sh scripts/bench.sh --with-services
fi

BENCH_CONFIGS=${BENCH_CONFIGS:-gate nogate}
ROOM_USERS=${ROOM_USERS:-500}
ROOM_RATE=${ROOM_RATE:-100}
BENCH_SCENARIOS=${BENCH_SCENARIOS:-hot-seat distinct mixed storm-readers fanout seatmap-read}
HOT_USERS=${HOT_USERS:-1000}
DISTINCT_SEATS=${DISTINCT_SEATS:-2000}
DISTINCT_CONCURRENCY=${DISTINCT_CONCURRENCY:-50}
DISTINCT_SECS=${DISTINCT_SECS:-10}
MIXED_SECS=${MIXED_SECS:-10}
MIXED_CONCURRENCY=${MIXED_CONCURRENCY:-50}
MIXED_SEATS=${MIXED_SEATS:-2000}
STORM_USERS=${STORM_USERS:-1000}
STORM_READERS=${STORM_READERS:-20}
STORM_PHASE_SECS=${STORM_PHASE_SECS:-3}
FANOUT_SUBSCRIBERS=${FANOUT_SUBSCRIBERS:-1000}
FANOUT_CHANGES=${FANOUT_CHANGES:-50}
SEATMAP_SEATS=${SEATMAP_SEATS:-10000}
SEATMAP_READERS=${SEATMAP_READERS:-200}
SEATMAP_SECS=${SEATMAP_SECS:-10}
SEATMAP_FORMS=${SEATMAP_FORMS:-post post-gzip get-etag}
SEATMAP_CHANGES=${SEATMAP_CHANGES:-10}
RAW_SQL=${RAW_SQL:-1}

SERVER_BIN=$ROOT/target/release/onsale
BENCH_BIN=$ROOT/target/release/onsale-bench
OUT=$ROOT/target/bench
RESULTS=$OUT/results.jsonl
JWT_SECRET=bench-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
export JWT_SECRET
STAMP=$(date +%s)

mkdir -p "$OUT"
: >"$RESULTS"

# ------------------------------------------------------------- servers ---

# Every onsale process of the current configuration (two for `two`).
SERVER_PIDS=()

stop_server() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PIDS=()
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A TCP port on 127.0.0.1 nothing listens on (below the ephemeral range).
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((16000 + RANDOM % 16000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

# A fresh PostgreSQL database on the throwaway server; prints its URL.
fresh_pg_database() {
    local name="onsale_bench_$1_$STAMP"
    psql "$TEST_DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $name" >/dev/null
    echo "${TEST_DATABASE_URL%/*}/$name"
}

# launch_server CONFIG LOGFILE DB REDIS GATE CACHE GROUP [USER_LIMIT]: starts one onsale on a
# free port (USER_LIMIT: RATE_LIMIT_USER_PER_SEC if given, else the server's default),
# logging to LOGFILE, and waits until it answers; adds its PID to SERVER_PIDS and sets
# LAUNCHED_URL.
launch_server() {
    local config=$1 logfile=$2 db=$3 redis=$4 gate=$5 cache=$6 group=$7 limit=${8:-} port pid url
    port=$(free_port)
    url=http://127.0.0.1:$port
    # Run from the output directory so that no .env file adds settings; STRIPE_* unset keeps
    # payments off (confirmHold books directly).
    (
        cd "$OUT/$config"
        exec env -u STRIPE_SECRET_KEY -u STRIPE_API_BASE -u STRIPE_WEBHOOK_SECRET \
            DATABASE_URL="$db" REDIS_URL="$redis" SEAT_GATE="$gate" SEATMAP_CACHE="$cache" \
            GROUP_COMMIT="$group" ${limit:+RATE_LIMIT_USER_PER_SEC=$limit} \
            BIND_ADDR="127.0.0.1:$port" JWT_SECRET="$JWT_SECRET" SEED_DEMO=false \
            LOG_FORMAT=json RUST_LOG=warn "$SERVER_BIN"
    ) >"$logfile" 2>&1 &
    pid=$!
    SERVER_PIDS+=("$pid")
    for _ in $(seq 1 300); do
        if scripts/http-ok.sh "$url/readyz"; then
            log "$config: onsale (pid $pid) ready at $url (SEAT_GATE=$gate${redis:+, Redis})"
            LAUNCHED_URL=$url
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2
            log "$config: onsale exited during start"
            return 1
        fi
        sleep 0.1
    done
    log "$config: onsale did not become ready"
    return 1
}

# start_server CONFIG: starts onsale for CONFIG (two instances for `two`) and waits until it
# answers; sets BASE_URL (and ALSO_URL, the second instance, for `two`).
start_server() {
    local config=$1 dir=$OUT/$1 db redis="" gate=on cache=on group=off instances=1 limit=""
    case $config in
        gate) db=$(fresh_pg_database "$config") redis=$TEST_REDIS_URL ;;
        group) db=$(fresh_pg_database "$config") redis=$TEST_REDIS_URL group=on ;;
        nogate) db=$(fresh_pg_database "$config") redis=$TEST_REDIS_URL gate=off ;;
        nocache) db=$(fresh_pg_database "$config") redis=$TEST_REDIS_URL cache=off ;;
        local) db=$(fresh_pg_database "$config") ;;
        sqlite) db="sqlite://$dir/onsale.db?mode=rwc" ;;
        two) db=$(fresh_pg_database "$config") redis=$TEST_REDIS_URL instances=2 ;;
        room) db=$(fresh_pg_database "$config") redis=$TEST_REDIS_URL limit=0 ;;
        *)
            log "unknown configuration $config"
            return 1
            ;;
    esac
    rm -f "$dir"/onsale.db*
    launch_server "$config" "$dir/server.log" "$db" "$redis" "$gate" "$cache" "$group" \
        "$limit" || return 1
    BASE_URL=$LAUNCHED_URL
    ALSO_URL=""
    if [ "$instances" = 2 ]; then
        # Started once the first is ready, so that only one of them migrates the database.
        launch_server "$config" "$dir/server2.log" "$db" "$redis" "$gate" "$cache" "$group" \
            "$limit" || return 1
        ALSO_URL=$LAUNCHED_URL
    fi
}

# ----------------------------------------------------------- scenarios ---

FAILED=()

# scenario CONFIG NAME ARGS...: runs one onsale-bench scenario (if selected), keeps its output
# in $OUT/CONFIG/NAME[-$TAG].txt.
scenario() {
    local config=$1 name=$2 rc=0 file
    shift 2
    case " $BENCH_SCENARIOS " in *" $name "*) ;; *) return 0 ;; esac
    file=$OUT/$config/$name${TAG:+-$TAG}.txt
    log "$config: $name $*"
    "$BENCH_BIN" --url "$BASE_URL" --label "$config${TAG:+ $TAG}" --json "$name" "$@" \
        >"$file" 2>&1 || rc=$?
    grep '^{.*"scenario"' "$file" >>"$RESULTS" || true
    sed -n '/^result/p' "$file" | sed "s/^/[bench] $config $name${TAG:+ $TAG}: /" >&2
    if [ "$rc" -ne 0 ]; then
        FAILED+=("$config/$name${TAG:+-$TAG} (exit $rc)")
        [ "$rc" -eq 1 ] || tail -n 5 "$file" >&2
    fi
}

started=$(date +%s)
for config in $BENCH_CONFIGS; do
    mkdir -p "$OUT/$config"
    rm -f "$OUT/$config"/*.txt
    if ! start_server "$config"; then
        FAILED+=("$config (server did not start)")
        stop_server
        continue
    fi
    if [ "$config" = two ]; then
        # Two instances on one database: distinct only, its workers split between them.
        scenario "$config" distinct --seats "$DISTINCT_SEATS" \
            --concurrency "$DISTINCT_CONCURRENCY" --duration-secs "$DISTINCT_SECS" \
            --also-url "$ALSO_URL"
        stop_server
        continue
    fi
    if [ "$config" = room ]; then
        # Without the per-user limit: each waiting user polls joinQueue.
        BENCH_SCENARIOS="$BENCH_SCENARIOS waiting-room" scenario "$config" waiting-room \
            --users "$ROOM_USERS" --rate "$ROOM_RATE"
        stop_server
        continue
    fi
    scenario "$config" hot-seat --users "$HOT_USERS"
    scenario "$config" distinct --seats "$DISTINCT_SEATS" \
        --concurrency "$DISTINCT_CONCURRENCY" --duration-secs "$DISTINCT_SECS"
    scenario "$config" mixed --seats "$MIXED_SEATS" --concurrency "$MIXED_CONCURRENCY" \
        --duration-secs "$MIXED_SECS"
    scenario "$config" storm-readers --users "$STORM_USERS" --readers "$STORM_READERS" \
        --phase-secs "$STORM_PHASE_SECS"
    scenario "$config" fanout --subscribers "$FANOUT_SUBSCRIBERS" --changes "$FANOUT_CHANGES"
    for form in $SEATMAP_FORMS; do
        TAG=$form scenario "$config" seatmap-read --seats "$SEATMAP_SEATS" \
            --readers "$SEATMAP_READERS" --duration-secs "$SEATMAP_SECS" --form "$form"
        if [ "$SEATMAP_CHANGES" != 0 ]; then
            TAG=$form-changes scenario "$config" seatmap-read --seats "$SEATMAP_SEATS" \
                --readers "$SEATMAP_READERS" --duration-secs "$SEATMAP_SECS" --form "$form" \
                --changes-per-sec "$SEATMAP_CHANGES"
        fi
    done
    stop_server
done

if [ "$RAW_SQL" = 1 ]; then
    log "raw-SQL ceiling (pgbench)"
    mkdir -p "$OUT/raw-sql"
    if JSON=1 OUT_DIR=$OUT/raw-sql ONSALE_BIN=$SERVER_BIN \
        scripts/raw-sql-ceiling.sh "$(fresh_pg_database rawsql)" >"$OUT/raw-sql/result.txt"; then
        grep '^{' "$OUT/raw-sql/result.txt" >>"$RESULTS" || true
        grep '^raw-sql' "$OUT/raw-sql/result.txt" | sed 's/^/[bench] /' >&2
    else
        FAILED+=("raw-sql ceiling")
    fi
fi

"$BENCH_BIN" summary "$RESULTS" >"$OUT/summary.md"
printf '\n==== summary (%s s; raw outputs in %s) ====\n\n' "$(($(date +%s) - started))" "$OUT"
cat "$OUT/summary.md"
if [ "${#FAILED[@]}" -gt 0 ]; then
    printf '\nFAILED: %s\n' "${FAILED[*]}"
    exit 1
fi
printf '\nall checks passed\n'
