#!/usr/bin/env bash
# A PostgreSQL cluster of a test's own, so the test can stop and restart it without
# disturbing the shared test server that other tests use at the same time.
#
# usage: pg-own-cluster.sh start|stop|restart|destroy DIR PORT
#
#   start    initdb DIR/data on first use, then start on 127.0.0.1:PORT and wait until it
#            accepts connections (a no-op apart from the wait when it already runs)
#   stop     fast shutdown: open transactions roll back, connections are cut; waits
#   restart  stop, then start
#   destroy  immediate shutdown, then delete DIR (cleanup; never fails)
#
# The server binaries come from TEST_PG_BIN_DIR (exported by scripts/with-services.sh) or,
# when it is unset, from the newest /usr/lib/postgresql/*/bin or PATH. PostgreSQL refuses
# to run as root, so as root the cluster belongs to, and runs as, the postgres user.
# Connect as postgres@127.0.0.1:PORT/postgres, no password.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop|restart|destroy DIR PORT" >&2
    exit 2
}

[ $# -eq 3 ] || usage
action=$1
dir=$2
port=$3
data=$dir/data
log=$dir/postgres.log

is_root() { [ "$(id -u)" -eq 0 ]; }

find_bin_dir() {
    local d p
    if [ -n "${TEST_PG_BIN_DIR:-}" ] && [ -x "$TEST_PG_BIN_DIR/pg_ctl" ]; then
        echo "$TEST_PG_BIN_DIR"
        return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && echo "$d" && return 0
    done
    if p=$(command -v pg_ctl 2>/dev/null); then
        dirname "$(readlink -f "$p")"
        return 0
    fi
    echo "pg-own-cluster.sh: PostgreSQL server binaries not found (set TEST_PG_BIN_DIR)" >&2
    return 1
}

# Run a command as the cluster's owner (the postgres user when we are root).
as_owner() {
    if is_root; then
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u postgres -- "$@")
        else
            (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
        fi
    else
        (cd / && "$@")
    fi
}

init_cluster() {
    mkdir -p "$dir"
    if is_root; then
        if ! id postgres >/dev/null 2>&1; then
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin postgres
        fi
        chmod 755 "$dir"
        chown postgres: "$dir"
    fi
    as_owner "$bin/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 --locale=C \
        >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        return 1
    }
    # Small and fast: a throwaway server for one test.
    cat >>"$data/postgresql.conf" <<CONF

# ---- a test's own throwaway server (scripts/pg-own-cluster.sh) ----
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 16MB
CONF
}

is_running() {
    [ -d "$data" ] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

wait_ready() {
    local isready="$bin/pg_isready" i
    [ -x "$isready" ] || isready=$(command -v pg_isready || true)
    [ -n "$isready" ] || return 0
    for i in $(seq 1 150); do
        "$isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres && return 0
        sleep 0.1
    done
    echo "pg-own-cluster.sh: PostgreSQL on port $port did not become ready" >&2
    return 1
}

do_start() {
    [ -f "$data/PG_VERSION" ] || init_cluster
    if ! is_running; then
        # The port is given on each start, so a retry on another port needs no config edit.
        if ! as_owner "$bin/pg_ctl" -D "$data" -l "$log" -o "-p $port" -w -t 30 -s start; then
            echo "pg-own-cluster.sh: PostgreSQL failed to start; last log lines:" >&2
            tail -n 20 "$log" >&2 || true
            return 1
        fi
    fi
    wait_ready
}

do_stop() {
    is_running || return 0
    as_owner "$bin/pg_ctl" -D "$data" -m "${1:-fast}" -w -t 30 -s stop
}

bin=$(find_bin_dir)
case $action in
    start) do_start ;;
    stop) do_stop fast ;;
    restart) do_stop fast && do_start ;;
    destroy)
        do_stop immediate >/dev/null 2>&1 || true
        rm -rf "$dir"
        ;;
    *) usage ;;
esac
