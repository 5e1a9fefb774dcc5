#!/usr/bin/env bash
# Installs what the tests need besides Rust: the Node packages of the third-party WebSocket
# client check (tests/node). Idempotent; run by scripts/test.sh before the checks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[prepare] installing nodejs and npm from Debian"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "[prepare] node and npm are required (tests/node)" >&2
        exit 1
    fi
fi

if [ ! -d tests/node/node_modules/graphql-ws ]; then
    echo "[prepare] npm ci in tests/node"
    npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
fi
