#!/usr/bin/env bash
# The one test command: formatting, lints and the test suite, run against
# throwaway PostgreSQL and Redis servers (see scripts/with-services.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n==== %s ====\n' "$*"; }

if [ "${1:-}" != --with-services ]; then
    # Hook for extra setup (node packages, Python venv, ...).
    if [ -x scripts/test-prepare.sh ]; then
        section "prepare (scripts/test-prepare.sh)"
        scripts/test-prepare.sh
    fi

    # The repository's copy of the contract (docs/CONTRACT.md, which the tests read) must be
    # the shared one wherever that sits beside the checkout: a difference fails here.
    section "docs/CONTRACT.md matches ../shared/CONTRACT.md (scripts/check-contract.sh)"
    scripts/check-contract.sh

    section "cargo fmt --check"
    cargo fmt --all -- --check

    # Run the rest of this script with the services up and their
    # TEST_* env vars exported.
    exec scripts/with-services.sh scripts/test.sh --with-services
fi

section "cargo clippy"
cargo clippy --all-targets --workspace -- -D warnings

# The fuzz targets (tests/api/fuzz.rs) run 20 s each within the suite: about a minute.
export FUZZ_SECONDS=${FUZZ_SECONDS:-20}

if cargo nextest --version >/dev/null 2>&1; then
    section "cargo nextest run"
    cargo nextest run --workspace --no-fail-fast
else
    section "cargo test"
    cargo test --workspace
fi

section "browser test (scripts/browser-test.sh)"
scripts/browser-test.sh

section "all checks passed"
