#!/usr/bin/env bash
# Checks that docs/CONTRACT.md, the copy of the public contract that the repository and its
# tests use, is the same document as the shared contract where one sits beside the checkout
# (../shared/CONTRACT.md). Run by scripts/test.sh.
#
# usage: scripts/check-contract.sh
#
# SHARED_CONTRACT=PATH compares with another file instead; then that file must exist.
# Exit code: 0 when the two are the same or no shared copy is beside the checkout (it says so);
# 1, with a diff, when they differ: the two must not drift apart. Bring the repository's copy
# up to date with `cp ../shared/CONTRACT.md docs/CONTRACT.md` (and build what changed).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "[contract] $*" >&2; }

ours=docs/CONTRACT.md
shared=${SHARED_CONTRACT:-../shared/CONTRACT.md}

if [ ! -f "$shared" ]; then
    if [ -n "${SHARED_CONTRACT:-}" ]; then
        log "error: SHARED_CONTRACT=$shared does not exist"
        exit 1
    fi
    log "no $shared beside this checkout: nothing to compare $ours with"
    exit 0
fi

if diff -u --label "$shared" --label "$ours" "$shared" "$ours"; then
    log "$ours is the same as $shared"
else
    log "error: $ours differs from $shared (diff above, - shared, + ours)."
    log "Update the repository's copy: cp $shared $ours"
    exit 1
fi
