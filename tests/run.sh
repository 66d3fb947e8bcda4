#!/bin/sh
# The test command: install what the tests need on Debian, then run them all.
#
#     sh tests/run.sh [pytest arguments]
#
# The tests drive real programs (telnet, nc, socat, Chromium...), and a missing
# one is a failure, not a skip: so they are installed here rather than assumed.
set -eu
cd "$(dirname "$0")/.."

missing=""
need() { missing="$missing $*"; }

command -v python3 >/dev/null || need python3
command -v telnet >/dev/null || need telnet
command -v redis-server >/dev/null || need redis-server
command -v socat >/dev/null || need socat
command -v tmux >/dev/null || need tmux
command -v openssl >/dev/null || need openssl
# The benchmark's smoke test builds its minimal C relay (bench/crelay.c).
command -v gcc >/dev/null || need gcc
# The script tests need `nc -N` (half-close at the end of the input), which only
# Debian's OpenBSD netcat has; netcat-traditional may own the name `nc`.
command -v nc.openbsd >/dev/null || nc -h 2>&1 | grep -q -- -N || need netcat-openbsd
# test_web.py drives Debian's headless Chromium at these fixed paths.
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || need chromium chromium-driver

# Debian's own python3 refuses `pip install` outside a virtual environment
# (PEP 668), so with it the tests run in .venv, which needs python3-venv.
managed() {
    python3 -c 'import os, sys, sysconfig
stdlib = sysconfig.get_path("stdlib")
sys.exit(sys.prefix != sys.base_prefix or not os.path.exists(stdlib + "/EXTERNALLY-MANAGED"))'
}
if command -v python3 >/dev/null && managed && [ ! -d .venv ]; then
    python3 -c 'import ensurepip' 2>/dev/null || need python3-venv
fi

if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing programs; install them with:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y$missing" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi

python=python3
if managed; then
    [ -d .venv ] || python3 -m venv .venv
    python=.venv/bin/python
fi
# The package and its test extras (pytest, pexpect, selenium...), from this tree.
"$python" -m pip install -q '.[test]'
exec "$python" -m pytest "$@"
