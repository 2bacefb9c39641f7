#!/bin/sh
# bench/timequality.sh: ntpgated and chronyd (both -x) as clients of one upstream through one
# jitter relay, side by side, per scenario; prints a markdown table of each daemon's offset
# error (docs/client.md). A long run (default: 1000 s warm-up + 1800 s of readings, for each
# of three scenarios), not part of make check. Arguments go to bench/timequality.py, e.g.
#   bench/timequality.sh --warmup 300 --duration 420 --poll 2
# (--scenarios sym runs one; --raw keeps both clients' raw samples, --out DIR puts the
# readings elsewhere: several runs can go in parallel, each in its own namespace.)
# Runs in a private network namespace (loopback only); every daemon is started under
# `setpriv --bounding-set -sys_time` with -x and never touches the clock.
set -eu
cd "$(dirname "$0")/.."
[ -x build/ntpgated ] || { echo "build first: make (build/ntpgated)" >&2; exit 1; }
export NTPG_DAEMON="${NTPG_DAEMON:-$(pwd)/build/ntpgated}" NTPG_SRC="$(pwd)"
exec unshare -n sh -c 'ip link set lo up && exec /usr/bin/python3 bench/timequality.py "$@"' \
  timequality "$@"
