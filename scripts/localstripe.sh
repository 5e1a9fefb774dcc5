#!/usr/bin/env bash
# localstripe, a fake but stateful Stripe server, for tests and local runs.
#
# usage: scripts/localstripe.sh install
#            Create or update the virtualenv .tools/localstripe-venv (idempotent)
#            and print its python's path.
#        scripts/localstripe.sh serve [--port PORT] [--port-file FILE]
#            Install if needed, then serve in the foreground on 127.0.0.1:PORT
#            (default: a free port chosen by the kernel). With --port-file, the
#            port is written to FILE once the socket listens.
#
# Unlike localstripe's own command line, serve binds loopback only and never
# reads or writes /tmp/localstripe.pickle, so each run starts empty and runs
# on one machine cannot see each other's objects.
set -euo pipefail

LOCALSTRIPE_VERSION=1.15.10

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.tools/localstripe-venv
PY=$VENV/bin/python

log() { echo "[localstripe] $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

installed() {
    [ -x "$PY" ] && "$PY" - "$LOCALSTRIPE_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import aiohttp, localstripe.server  # noqa: F401  (fails if the install is broken)
sys.exit(version("localstripe") != sys.argv[1])
PY
}

# Debian's python3 cannot create a venv without python3-venv (ensurepip).
ensure_python() {
    if command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' 2>/dev/null; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing python3 and python3-venv with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 &&
            apt-get install -y -qq --no-install-recommends python3 python3-venv >&2 ||
            die "apt-get could not install python3-venv"
        return 0
    fi
    die "python3 with the venv module is needed (Debian: apt-get install python3-venv)"
}

install() {
    installed && return 0
    mkdir -p "$ROOT/.tools"
    # Two runs starting at once must not build the same venv together. The
    # lock lives in a subshell so that the server started later does not
    # inherit it.
    (
        if command -v flock >/dev/null 2>&1; then flock 9; fi
        installed && exit 0
        ensure_python
        log "installing localstripe $LOCALSTRIPE_VERSION into $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV" >&2 || die "python3 -m venv failed"
        "$PY" -m pip install --quiet --disable-pip-version-check \
            "localstripe==$LOCALSTRIPE_VERSION" >&2 || die "pip install localstripe failed"
        installed || die "localstripe does not import after installing it"
    ) 9>"$ROOT/.tools/localstripe-venv.lock" || exit 1
}

serve() {
    local port=0 port_file=""
    while [ $# -gt 0 ]; do
        case $1 in
            --port) port=${2:?--port needs a value}; shift 2 ;;
            --port-file) port_file=${2:?--port-file needs a value}; shift 2 ;;
            *) die "unknown argument $1" ;;
        esac
    done
    install
    exec "$PY" - "$port" "$port_file" <<'PY'
import logging, os, socket, sys

from aiohttp import web
import localstripe.resources as resources

# The store pickles itself to a fixed file in /tmp after every change, and
# localstripe's CLI loads that file at start: keep this instance in memory.
resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None

from localstripe.server import app  # noqa: E402

port, port_file = int(sys.argv[1]), sys.argv[2]
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen(128)
port = sock.getsockname()[1]
if port_file:
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, port_file)  # readers never see a half-written file
print(f"localstripe listening on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
logging.basicConfig(level=logging.WARNING)
web.run_app(app, sock=sock, print=None, access_log=None)
PY
}

case ${1:-} in
    install)
        install
        echo "$PY"
        ;;
    serve)
        shift
        serve "$@"
        ;;
    *)
        echo "usage: $0 install | serve [--port PORT] [--port-file FILE]" >&2
        exit 2
        ;;
esac
