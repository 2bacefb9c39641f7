#!/usr/bin/env bash
# bench/scaling.sh: ntpgated with `threads 1` against `threads 2` on one port (SO_REUSEPORT),
# nothing pinned, under the same saturating load from bench/ntpload (10,000 sources, closed
# loop). Prints replies/s, the daemon's CPU per answer and how the kernel spread the requests
# over the threads. On a 2-core machine the generator needs a core too, so a second serving
# thread can only take time from the generator: read the figures as "does a second thread
# cost anything", not as scaling. See docs/performance.md.
#
# usage: bench/scaling.sh [-n] [-d SECONDS] [-R REPEATS] [-b BUILD]
#   -n  do not build (use BUILD/ntpgated and BUILD/ntpload as they are)
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=5 REPS=3 BUILD=build-bench DO_BUILD=1
while getopts "nd:R:b:h" opt; do
  case $opt in
    n) DO_BUILD=0 ;;
    d) DUR=$OPTARG ;;
    R) REPS=$OPTARG ;;
    b) BUILD=$OPTARG ;;
    *) sed -n '2,11p' "$0"; exit 2 ;;
  esac
done
[[ $DUR =~ ^[0-9]+$ ]] && [ "$DUR" -ge 1 ] && [ "$DUR" -le 60 ] || { echo "scaling.sh: -d 1..60" >&2; exit 2; }
[[ $REPS =~ ^[0-9]+$ ]] && [ "$REPS" -ge 1 ] && [ "$REPS" -le 10 ] || { echo "scaling.sh: -R 1..10" >&2; exit 2; }

ADDR=127.0.89.1 PORT=12324
NTPGATED=$BUILD/ntpgated NTPLOAD=$BUILD/ntpload
CLK_TCK=$(getconf CLK_TCK)
if [ "$DO_BUILD" = 1 ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" --target ntpgated ntpload -j"$(nproc)" >/dev/null
fi

TMP=$(mktemp -d /tmp/ntpgate-scaling.XXXXXX)
DPID=
cleanup() {
  if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then
    kill -TERM "$DPID" 2>/dev/null || true
    wait "$DPID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kv() { grep -o "\b$2=[^ ]*" <<<"$1" | head -1 | cut -d= -f2; }

echo "scaling.sh: $(date -u '+%Y-%m-%d %H:%M:%S UTC') | $(nproc) cores | ${DUR} s x ${REPS} per setting | 10,000 sources, closed loop, window 64, nothing pinned"
printf '%-9s %-4s %12s %14s %14s %s\n' setting rep "replies/s" "CPU us/answer" "daemon CPU %" "per-thread share of requests"
for threads in 1 2; do
  cat >"$TMP/n.conf" <<EOF
interface listen $ADDR
port $PORT
server 127.127.1.0
fudge 127.127.1.0 stratum 10
threads $threads
EOF
  setpriv --bounding-set -sys_time -- "$NTPGATED" -n -x -c "$TMP/n.conf" -l "$TMP/n.log" &
  DPID=$!
  for _ in $(seq 50); do
    "$NTPLOAD" -s "$ADDR" -p "$PORT" -c 1 -d 1 -q >/dev/null 2>&1 && break
    sleep 0.1
  done
  for rep in $(seq "$REPS"); do
    kill -USR1 "$DPID"; sleep 0.3
    c0=$(cpu_ticks "$DPID")
    line=$("$NTPLOAD" -s "$ADDR" -p "$PORT" -n 10000 -b 127.101.0.1 -w 64 -d "$DUR" -q)
    c1=$(cpu_ticks "$DPID")
    kill -USR1 "$DPID"; sleep 0.3
    valid=$(kv "$line" valid) rps=$(kv "$line" rps)
    # per-thread received from the last two stats dumps
    share=$(awk -v n="$threads" '/stats: thread[0-9]+_received/ {
        split($0, a, "thread"); split(a[2], b, "_received "); t = b[1]; v = b[2] + 0
        prev[t] = last[t]; last[t] = v }
      END { s = 0; for (t = 0; t < n; t++) { d[t] = last[t] - prev[t]; s += d[t] }
            out = ""; for (t = 0; t < n; t++) out = out sprintf("%s%.0f%%", t ? " / " : "", s ? 100 * d[t] / s : 0)
            print out }' "$TMP/n.log")
    awk -v t="$threads" -v r="$rep" -v rps="$rps" -v v="$valid" -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v d="$DUR" -v sh="$share" \
      'BEGIN { printf "%-9s %-4s %12.0f %14.2f %14.0f %s\n", "threads " t, r, rps, v ? c / hz * 1e6 / v : 0, 100 * c / hz / d, sh }'
  done
  kill -TERM "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=
done
