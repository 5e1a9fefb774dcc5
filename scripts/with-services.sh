#!/usr/bin/env bash
# Run a command with throwaway PostgreSQL, Redis and localstripe servers.
#
# usage: scripts/with-services.sh CMD [ARGS...]
#
# PostgreSQL: if TEST_DATABASE_URL is set it is used as is. Otherwise a fresh
# cluster is created in a temp dir and started on a free port on 127.0.0.1,
# and these are exported:
#   TEST_DATABASE_URL    postgres://postgres@127.0.0.1:PORT/postgres
#   TEST_PG_PORT         PORT
#   TEST_PG_BIN_DIR      directory holding pg_ctl, initdb, postgres, ...
#   TEST_PG_DATA_DIR     the cluster's data directory
#   TEST_PG_LOG_FILE     the server log
#   TEST_PG_CTL_SCRIPT   absolute path of scripts/pg-ctl.sh
#                        ("$TEST_PG_CTL_SCRIPT" stop|start|restart [immediate])
# It runs with fsync, synchronous_commit and full_page_writes off (nothing of a test run
# needs to survive a power cut), unless PG_DURABLE=1 (benchmarks: PostgreSQL's durable
# defaults, as users run it).
#
# Redis: if TEST_REDIS_URL is set it is used as is. Otherwise redis-server is
# started on a free port on 127.0.0.1 without persistence, and these are
# exported:
#   TEST_REDIS_URL         redis://127.0.0.1:PORT
#   TEST_REDIS_PORT        PORT
#   TEST_REDIS_SERVER_BIN  path of redis-server (to restart it on the same port, and
#                          to start the Redis Clusters of tests/api/redis_cluster.rs;
#                          exported even with TEST_REDIS_URL, and redis-cli installed too)
#
# Stripe: if TEST_STRIPE_API_BASE is set it is used as is. Otherwise localstripe
# (a fake Stripe, installed into .tools/localstripe-venv by
# scripts/localstripe.sh) is started on a free port on 127.0.0.1 with an empty
# store, and this is exported:
#   TEST_STRIPE_API_BASE   http://127.0.0.1:PORT (any sk_... key is accepted)
#
# Missing servers are installed with apt-get when running as root on Debian.
# Whatever this script started is stopped and deleted when it exits; it exits
# with CMD's exit code.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "[with-services] $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

if [ $# -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

is_root() { [ "$(id -u)" -eq 0 ]; }

# ---------------------------------------------------------------- cleanup ---

WORK_DIR=""
CMD_PID=""
PG_STARTED=""
REDIS_PORT=""
REDIS_PID=""
STRIPE_PID=""

# Kill a pid only if it still belongs to a process whose name matches $2.
kill_if() {
    local pid=$1 name=$2
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 0
    grep -q "$name" "/proc/$pid/comm" 2>/dev/null || return 0
    kill -9 "$pid" 2>/dev/null || true
}

# True while pid $1 runs (a zombie that exited but was not yet reaped does not).
running() {
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ]
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM HUP
    if [ -n "$CMD_PID" ] && kill -0 "$CMD_PID" 2>/dev/null; then
        # We were interrupted: pass it on to CMD and let it finish first.
        kill -TERM "$CMD_PID" 2>/dev/null
        wait "$CMD_PID" 2>/dev/null
    fi
    if [ -n "$PG_STARTED" ]; then
        "$SCRIPT_DIR/pg-ctl.sh" stop immediate >/dev/null 2>&1
        if [ -f "$TEST_PG_DATA_DIR/postmaster.pid" ]; then
            kill_if "$(head -n 1 "$TEST_PG_DATA_DIR/postmaster.pid")" postgres
        fi
    fi
    if [ -n "$REDIS_PORT" ]; then
        # Stops whatever Redis serves our port, including one a test restarted.
        redis_cmd "$REDIS_PORT" SHUTDOWN NOSAVE >/dev/null 2>&1
        kill_if "$REDIS_PID" redis
    fi
    if [ -n "$STRIPE_PID" ]; then
        # Before exec the pid is the wrapper script, after it localstripe's python.
        if grep -q 'python\|localstripe' "/proc/$STRIPE_PID/comm" 2>/dev/null; then
            kill -TERM "$STRIPE_PID" 2>/dev/null
            for _ in $(seq 1 30); do
                running "$STRIPE_PID" || break
                sleep 0.1
            done
            kill_if "$STRIPE_PID" 'python\|localstripe'
        fi
        wait "$STRIPE_PID" 2>/dev/null
    fi
    if [ -n "$WORK_DIR" ]; then
        rm -rf "$WORK_DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------- helpers ---

# Print a TCP port on 127.0.0.1 that nothing listens on. The range stays below
# Linux's ephemeral port range (32768+) so client sockets never occupy it.
free_port() {
    local port i
    for i in $(seq 1 200); do
        port=$((16000 + RANDOM % 16000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

APT_UPDATED=""
apt_install() {
    is_root && command -v apt-get >/dev/null 2>&1 || return 1
    log "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$APT_UPDATED" ]; then
        apt-get update -qq >&2 || return 1
        APT_UPDATED=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Send one command to Redis on 127.0.0.1:$1 and print the reply.
redis_cmd() {
    local port=$1
    shift
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -h 127.0.0.1 -p "$port" "$@"
    else
        # No redis-cli: speak the inline protocol over bash's /dev/tcp.
        (
            exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
            printf '%s\r\n' "$*" >&3
            IFS= read -r -t 2 reply <&3 || exit 1
            reply=${reply%$'\r'}
            case $reply in
                '$-1') reply="" ;;
                '$'*) IFS= read -r -t 2 -N "${reply#\$}" reply <&3 || exit 1 ;;
                '+'*) reply=${reply#+} ;;
                '-'*) echo "$reply" >&2 && exit 1 ;;
            esac
            printf '%s\n' "$reply"
        )
    fi
}

# Print the pid of the Redis server answering on 127.0.0.1:$1.
redis_server_pid() {
    redis_cmd "$1" INFO server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p'
}

# ------------------------------------------------------------ fd limit ---

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

need_pg=""
need_redis=""
[ -n "${TEST_DATABASE_URL:-}" ] || need_pg=1
[ -n "${TEST_REDIS_URL:-}" ] || need_redis=1
need_stripe=""
[ -n "${TEST_STRIPE_API_BASE:-}" ] || need_stripe=1

if [ -n "$need_pg$need_redis$need_stripe" ]; then
    if is_root; then
        # The PostgreSQL user must be able to reach its dir inside this one.
        WORK_DIR=$(mktemp -d /tmp/onsale-services.XXXXXX)
        chmod 755 "$WORK_DIR"
    else
        WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/onsale-services.XXXXXX")
    fi
fi

# ---------------------------------------------------------- PostgreSQL ---

# Print the directory of a working PostgreSQL server installation, preferring
# the highest version under /usr/lib/postgresql.
find_pg_bin_dir() {
    local candidates=() d p
    while IFS= read -r d; do
        candidates+=("$d")
    done < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r)
    if p=$(command -v pg_ctl 2>/dev/null); then
        candidates+=("$(dirname "$(readlink -f "$p")")")
    fi
    if p=$(command -v pg_config 2>/dev/null); then
        candidates+=("$("$p" --bindir 2>/dev/null || true)")
    fi
    candidates+=(/usr/local/pgsql/bin /usr/local/bin)
    for d in "${candidates[@]}"; do
        [ -n "$d" ] || continue
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] &&
            "$d/pg_ctl" --version >/dev/null 2>&1 &&
            "$d/postgres" --version >/dev/null 2>&1; then
            dirname "$(readlink -f "$d/pg_ctl")"
            return 0
        fi
    done
    return 1
}

# Run a command as the PostgreSQL user when we are root.
as_pg_user() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

start_postgres() {
    local bin_dir pg_dir port attempt
    bin_dir=$(find_pg_bin_dir) ||
        { apt_install postgresql && bin_dir=$(find_pg_bin_dir); } ||
        die "PostgreSQL server binaries not found; install PostgreSQL or set TEST_DATABASE_URL"

    pg_dir=$WORK_DIR/pg
    mkdir "$pg_dir"
    if is_root; then
        if ! id postgres >/dev/null 2>&1; then
            log "creating system user postgres"
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin postgres
        fi
        chown postgres: "$pg_dir"
    fi

    export TEST_PG_BIN_DIR=$bin_dir
    export TEST_PG_DATA_DIR=$pg_dir/data
    export TEST_PG_LOG_FILE=$pg_dir/postgres.log
    export TEST_PG_CTL_SCRIPT=$SCRIPT_DIR/pg-ctl.sh

    log "initdb with $bin_dir"
    as_pg_user "$bin_dir/initdb" -D "$TEST_PG_DATA_DIR" -A trust -U postgres \
        --no-sync -E UTF8 --locale=C >"$pg_dir/initdb.log" 2>&1 ||
        { cat "$pg_dir/initdb.log" >&2; die "initdb failed"; }

    cat >>"$TEST_PG_DATA_DIR/postgresql.conf" <<CONF

# ---- throwaway test server (scripts/with-services.sh) ----
listen_addresses = '127.0.0.1'
unix_socket_directories = '$pg_dir'
max_connections = 500
shared_buffers = 256MB
CONF
    if [ "${PG_DURABLE:-0}" = 1 ]; then
        # Benchmarks: PostgreSQL's durable defaults (fsync, synchronous_commit and
        # full_page_writes on), as users run it.
        log "PostgreSQL with its durable defaults (PG_DURABLE=1)"
    else
        # Tests: nothing survives the run, so skip the flushes.
        cat >>"$TEST_PG_DATA_DIR/postgresql.conf" <<CONF
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    fi

    # Another process may grab the port between probing and binding: retry.
    for attempt in 1 2 3 4 5; do
        port=$(free_port) || die "could not find a free TCP port"
        echo "port = $port" >>"$TEST_PG_DATA_DIR/postgresql.conf"
        export TEST_PG_PORT=$port
        PG_STARTED=1
        if "$SCRIPT_DIR/pg-ctl.sh" start; then
            export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
            log "PostgreSQL ready at $TEST_DATABASE_URL"
            return 0
        fi
        log "PostgreSQL failed to start on port $port (attempt $attempt)"
    done
    die "could not start PostgreSQL (log: $TEST_PG_LOG_FILE)"
}

# --------------------------------------------------------------- Redis ---

find_redis_server() {
    local p
    for p in "$(command -v redis-server 2>/dev/null || true)" /usr/bin/redis-server \
        /usr/local/bin/redis-server; do
        if [ -n "$p" ] && [ -x "$p" ]; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

start_redis() {
    local server redis_dir port attempt i pid
    server=$(find_redis_server) ||
        { apt_install redis-server && server=$(find_redis_server); } ||
        die "redis-server not found; install Redis or set TEST_REDIS_URL"

    redis_dir=$WORK_DIR/redis
    mkdir "$redis_dir"

    for attempt in 1 2 3 4 5; do
        port=$(free_port) || die "could not find a free TCP port"
        # setsid: own session, so a Ctrl-C aimed at CMD does not reach it.
        setsid "$server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
            --daemonize no --pidfile "$redis_dir/redis.pid" --dir "$redis_dir" \
            </dev/null >>"$redis_dir/redis.log" 2>&1 &
        pid=$!
        for i in $(seq 1 100); do
            # Ours only if the server on the port reports our pid: the port
            # may have been taken by someone else since free_port probed it.
            if [ "$(redis_server_pid "$port")" = "$pid" ]; then
                REDIS_PORT=$port # from now on cleanup() shuts down this port
                REDIS_PID=$pid
                export TEST_REDIS_URL="redis://127.0.0.1:$port"
                export TEST_REDIS_PORT=$port
                export TEST_REDIS_SERVER_BIN=$server
                log "Redis ready at $TEST_REDIS_URL"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break # died, e.g. port taken
            sleep 0.1
        done
        kill_if "$pid" redis
        log "Redis failed to start on port $port (attempt $attempt):"
        tail -n 5 "$redis_dir/redis.log" >&2 || true
    done
    die "could not start Redis"
}

# ---------------------------------------------------------- localstripe ---

# Empty localstripe's store on 127.0.0.1:$1; succeeds once it answers 200.
stripe_wipe() {
    local status
    status=$(
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'DELETE /_config/data HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
        IFS= read -r -t 2 line <&3 || exit 1
        printf '%s\n' "$line"
    ) 2>/dev/null || return 1
    [[ $status == HTTP/1.?' 200'* ]]
}

start_localstripe() {
    local stripe_dir port i
    # Installing may take a while on a fresh machine: do it before the clock runs.
    "$SCRIPT_DIR/localstripe.sh" install >/dev/null ||
        die "could not install localstripe; or set TEST_STRIPE_API_BASE"

    stripe_dir=$WORK_DIR/localstripe
    mkdir "$stripe_dir"
    # The server binds a port the kernel picks and writes it to port-file, so
    # no other process can take it between choosing and binding.
    setsid "$SCRIPT_DIR/localstripe.sh" serve --port-file "$stripe_dir/port" \
        </dev/null >>"$stripe_dir/localstripe.log" 2>&1 &
    STRIPE_PID=$!
    for i in $(seq 1 200); do
        if [ -s "$stripe_dir/port" ]; then
            port=$(cat "$stripe_dir/port")
            # The wipe doubles as the readiness check.
            if stripe_wipe "$port"; then
                export TEST_STRIPE_API_BASE="http://127.0.0.1:$port"
                log "localstripe ready at $TEST_STRIPE_API_BASE"
                return 0
            fi
        fi
        kill -0 "$STRIPE_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$stripe_dir/localstripe.log" >&2 || true
    die "could not start localstripe"
}

# ----------------------------------------------------------------- main ---

if [ -n "$need_pg" ]; then start_postgres; fi
if [ -n "$need_redis" ]; then start_redis; fi

# The Redis Cluster tests start clusters of their own (redis-server --cluster-enabled yes,
# redis-cli --cluster create), so both programs must be here even with TEST_REDIS_URL.
if [ -z "${TEST_REDIS_SERVER_BIN:-}" ]; then
    server=$(find_redis_server) ||
        { apt_install redis-server && server=$(find_redis_server); } ||
        die "redis-server not found; the Redis Cluster tests need it"
    export TEST_REDIS_SERVER_BIN=$server
fi
if [ ! -x "$(dirname "$TEST_REDIS_SERVER_BIN")/redis-cli" ] && ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-tools || die "redis-cli not found; the Redis Cluster tests need it"
fi
if [ -n "$need_stripe" ]; then start_localstripe; fi

# CMD runs in the background so that a signal to this script interrupts the
# wait below and is forwarded by cleanup(). Bash gives background commands
# /dev/null as stdin and ignored SIGINT/SIGQUIT: "<&0" and
# env --default-signal undo that, so CMD behaves as in the foreground.
if env --default-signal=INT true 2>/dev/null; then
    env --default-signal=INT,QUIT "$@" <&0 &
else
    "$@" <&0 &
fi
CMD_PID=$!
rc=0
wait "$CMD_PID" || rc=$?
CMD_PID=""
exit "$rc"
