#!/usr/bin/env bash
# End-to-end tests in a real browser (Debian's Chromium driven by playwright-core; nothing
# downloads a browser): the /demo seat map (tests/browser/seatmap.test.mjs) and GraphiQL with
# the network off (tests/browser/graphiql.test.mjs). Starts two onsale instances on one fresh
# PostgreSQL database and one Redis, runs the tests against them, one file after the other,
# and stops them. Screenshots go to test-artifacts/.
#
# usage: scripts/with-services.sh scripts/browser-test.sh
#
# Installs what is missing (idempotent): Debian's chromium (as root, with apt-get) and the
# packages pinned in tests/browser/package-lock.json. docs/demo-seatmap.png, the README's
# picture, is written when missing or when UPDATE_DOCS_SCREENSHOT=1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

log() { echo "[browser-test] $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

[ -n "${TEST_DATABASE_URL:-}" ] && [ -n "${TEST_REDIS_URL:-}" ] ||
    die "TEST_DATABASE_URL and TEST_REDIS_URL are unset: run scripts/with-services.sh scripts/browser-test.sh"

HOLD_TTL_SECS=${HOLD_TTL_SECS:-3}
ARTIFACTS_DIR=$ROOT/test-artifacts
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/onsale-browser.XXXXXX")
DB_NAME="onsale_browser_$(date +%s)_$$"
PIDS=()
DB_CREATED=""

cleanup() {
    local rc=$? pid
    set +e
    trap - EXIT INT TERM HUP
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        # Give each server 5 s to drain, then stop it hard.
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [ -n "$DB_CREATED" ]; then
        "$PSQL" "$TEST_DATABASE_URL" -qAt -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1
    fi
    if [ "$rc" -ne 0 ]; then
        for log_file in "$RUN_DIR"/onsale-*.log; do
            [ -f "$log_file" ] || continue
            log "last lines of $(basename "$log_file"):"
            tail -n 20 "$log_file" >&2
        done
    fi
    rm -rf "$RUN_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ------------------------------------------------------------------- install ---

if [ ! -x /usr/bin/chromium ]; then
    [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 ||
        die "/usr/bin/chromium is missing: install Debian's chromium package"
    log "installing Debian's chromium with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends chromium >&2
fi
command -v node >/dev/null 2>&1 || die "node is missing: install Node.js 20 or later"
# psql comes with PostgreSQL; beside the test server's binaries when it is not on PATH.
PSQL=$(command -v psql || echo "${TEST_PG_BIN_DIR:-/nonexistent}/psql")
[ -x "$PSQL" ] || die "psql is missing: install PostgreSQL's client (Debian: postgresql-client)"

# playwright-core only drives a browser; it never downloads one. The variable makes sure.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
installed=$(node -p 'try { require("./tests/browser/node_modules/playwright-core/package.json").version } catch { "" }')
wanted=$(node -p 'require("./tests/browser/package-lock.json").packages["node_modules/playwright-core"].version')
if [ "$installed" != "$wanted" ]; then
    log "installing playwright-core $wanted into tests/browser/node_modules"
    (cd tests/browser && npm ci --no-audit --no-fund >&2)
fi

# --------------------------------------------------------------------- build ---

log "building target/debug/onsale"
cargo build --quiet --bin onsale
BIN=$ROOT/target/debug/onsale

# ------------------------------------------------------------------ database ---

# A fresh database on the test server, named in the server's URL instead of its own.
base_url=${TEST_DATABASE_URL%%\?*}
query=${TEST_DATABASE_URL#"$base_url"}
DATABASE_URL="${base_url%/*}/$DB_NAME$query"
"$PSQL" "$TEST_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB_NAME" >/dev/null
DB_CREATED=1
log "database $DB_NAME created"

# ------------------------------------------------------------------- servers ---

# Starts instance $1 (extra env in $2...) on a free port and prints its base URL when ready.
JWT_SECRET=browser-test-secret-0123456789
start_instance() {
    local n=$1 log_file=$RUN_DIR/onsale-$1.log url="" pid
    shift
    env DATABASE_URL="$DATABASE_URL" REDIS_URL="$TEST_REDIS_URL" BIND_ADDR=127.0.0.1:0 \
        JWT_SECRET="$JWT_SECRET" DEV_SIGNIN=true \
        HOLD_TTL_SECS="$HOLD_TTL_SECS" LOG_FORMAT=json RUST_LOG=info "$@" \
        "$BIN" serve </dev/null >"$log_file" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || die "onsale instance $n exited: $(tail -n 5 "$log_file")"
        if [ -z "$url" ]; then
            url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/demo' "$log_file" | head -n 1 | sed 's|/demo$||') || true
        fi
        if [ -n "$url" ] && scripts/http-ok.sh "$url/readyz"; then
            echo "$url"
            return 0
        fi
        sleep 0.1
    done
    die "onsale instance $n did not become ready in 30 s"
}

# The first instance migrates and seeds the demo event; the second joins the same data.
start_instance 1 SEED_DEMO=true >"$RUN_DIR/url-1"
ONSALE_A_URL=$(cat "$RUN_DIR/url-1")
log "instance 1 (user A) at $ONSALE_A_URL"
start_instance 2 SEED_DEMO=false >"$RUN_DIR/url-2"
ONSALE_B_URL=$(cat "$RUN_DIR/url-2")
log "instance 2 (user B) at $ONSALE_B_URL"

# ---------------------------------------------------------------------- test ---

mkdir -p "$ARTIFACTS_DIR"
# GraphiQL's test creates an event of its own, which takes an admin.
ONSALE_ADMIN_TOKEN=$(JWT_SECRET=$JWT_SECRET "$BIN" token --sub browser-admin --admin)
log "running tests/browser/seatmap.test.mjs and tests/browser/graphiql.test.mjs"
started=$(date +%s)
rc=0
ONSALE_A_URL=$ONSALE_A_URL ONSALE_B_URL=$ONSALE_B_URL HOLD_TTL_SECS=$HOLD_TTL_SECS \
    ONSALE_ADMIN_TOKEN=$ONSALE_ADMIN_TOKEN ARTIFACTS_DIR=$ARTIFACTS_DIR \
    node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$RUN_DIR/results.tap" \
    tests/browser/seatmap.test.mjs tests/browser/graphiql.test.mjs || rc=$?
passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$RUN_DIR/results.tap")
failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$RUN_DIR/results.tap")
log "took $(($(date +%s) - started)) s; screenshots in test-artifacts/"
echo "browser: ${passed:-0} passed, ${failed:-0} failed"
if [ "$rc" -ne 0 ] || [ "${failed:-1}" != 0 ] || [ "${passed:-0}" = 0 ]; then
    exit 1
fi

if [ ! -f docs/demo-seatmap.png ] || [ "${UPDATE_DOCS_SCREENSHOT:-}" = 1 ]; then
    mkdir -p docs
    cp "$ARTIFACTS_DIR/seatmap-held-a.png" docs/demo-seatmap.png
    log "wrote docs/demo-seatmap.png"
fi
