#!/usr/bin/env bash
# Control the throwaway PostgreSQL started by scripts/with-services.sh.
#
# usage: pg-ctl.sh start|stop|restart|status [smart|fast|immediate]
#
# The shutdown mode (stop/restart) defaults to "fast"; use "immediate" to
# simulate a crash. "stop" is a no-op when the server is already stopped and
# "start" is a no-op (apart from waiting until it is ready) when it is running.
#
# Reads TEST_PG_DATA_DIR, TEST_PG_BIN_DIR, TEST_PG_PORT (and optionally
# TEST_PG_LOG_FILE), all exported by with-services.sh. All server settings
# (port, listen address, socket dir, ...) live in the data directory's
# postgresql.conf, so a restarted server comes back on the same port.
# When run as root, pg_ctl runs as the owner of the data directory.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop|restart|status [smart|fast|immediate]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
: "${TEST_PG_DATA_DIR:?TEST_PG_DATA_DIR is not set (run under scripts/with-services.sh)}"
: "${TEST_PG_BIN_DIR:?TEST_PG_BIN_DIR is not set (run under scripts/with-services.sh)}"

action=$1
mode=${2:-fast}
case $mode in smart | fast | immediate) ;; *) usage ;; esac

data=$TEST_PG_DATA_DIR
bin=$TEST_PG_BIN_DIR
log=${TEST_PG_LOG_FILE:-$(dirname "$data")/postgres.log}

# Run a command as the data directory's owner (PostgreSQL refuses to run as root).
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        local owner
        owner=$(stat -c %U "$data")
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u "$owner" -- "$@")
        else
            (cd / && su "$owner" -s /bin/bash -c "$(printf '%q ' "$@")")
        fi
    else
        (cd / && "$@")
    fi
}

is_running() {
    # pg_ctl status: 0 = running, 3 = not running, 4 = no accessible data dir
    as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

wait_ready() {
    [ -n "${TEST_PG_PORT:-}" ] || return 0
    local isready="$bin/pg_isready"
    [ -x "$isready" ] || isready=$(command -v pg_isready || true)
    [ -n "$isready" ] || return 0
    local i
    for i in $(seq 1 150); do
        "$isready" -q -h 127.0.0.1 -p "$TEST_PG_PORT" -U postgres -d postgres && return 0
        sleep 0.2
    done
    echo "pg-ctl.sh: PostgreSQL on port $TEST_PG_PORT did not become ready" >&2
    return 1
}

do_start() {
    if is_running; then
        wait_ready
        return
    fi
    if ! as_owner "$bin/pg_ctl" -D "$data" -l "$log" -w -t 30 -s start; then
        echo "pg-ctl.sh: failed to start PostgreSQL; last log lines:" >&2
        tail -n 20 "$log" >&2 || true
        return 1
    fi
    wait_ready
}

do_stop() {
    is_running || return 0
    as_owner "$bin/pg_ctl" -D "$data" -m "$mode" -w -t 30 -s stop
}

case $action in
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop && do_start ;;
    status) as_owner "$bin/pg_ctl" -D "$data" status ;;
    *) usage ;;
esac
