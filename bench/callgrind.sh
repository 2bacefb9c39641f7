#!/usr/bin/env bash
# bench/callgrind.sh: user-space instructions per answer, ntpgated against chronyd, on the
# same request stream, counted by valgrind's callgrind (this VM has no hardware counters for
# `perf stat`). Kernel work (the socket calls themselves) is not counted: this is the part of
# the cost that the daemon's own code decides.
#
# For each daemon: start it under callgrind (pinned to core 1, -x, without CAP_SYS_TIME, on
# loopback), wait until it answers, zero the counters (callgrind_control -z), send COUNT
# requests from SOURCES addresses (ntpload, closed loop, core 0), dump the counters
# (callgrind_control -d), stop the daemon by its pid. Instructions per answer = Ir of that
# dump / valid answers. Everything goes to bench/out/callgrind/.
#
# usage: bench/callgrind.sh [-b BUILD_DIR] [-c COUNT] [-n SOURCES] [-D ntpgated,chronyd]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=build-bench COUNT=20000 NSRC=1000 DAEMONS=ntpgated,chronyd
while getopts "b:c:n:D:h" opt; do
  case $opt in
    b) BUILD=$OPTARG ;;
    c) COUNT=$OPTARG ;;
    n) NSRC=$OPTARG ;;
    D) DAEMONS=$OPTARG ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
  esac
done
NTPGATED=$ROOT/$BUILD/ntpgated NTPLOAD=$ROOT/$BUILD/ntpload
CHRONYD=$ROOT/.peers/root/usr/sbin/chronyd
OUT=$ROOT/bench/out/callgrind
mkdir -p "$OUT"
exec 9>"$ROOT/bench/out/.lock"
flock -n 9 || { echo "callgrind.sh: bench/run.sh or callgrind.sh is running (bench/out/.lock)" >&2; exit 1; }
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null ||
  { echo "callgrind.sh: needs valgrind (scripts/deps.sh test installs it)" >&2; exit 1; }
PORT=12324 ADDR=127.202.0.1
TMP=$(mktemp -d /tmp/ntpgate-callgrind.XXXXXX)
DPID=
cleanup() {
  if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then
    kill -TERM "$DPID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DPID" 2>/dev/null || true
  fi
  [ -z "$DPID" ] || wait "$DPID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kv() { local w; for w in $1; do [ "${w%%=*}" = "$2" ] && { printf '%s' "${w#*=}"; return; }; done; printf '0'; }

for d in ${DAEMONS//,/ }; do
  conf=$TMP/$d.conf
  if [ "$d" = ntpgated ]; then
    printf '%s\n' "interface listen $ADDR" "port $PORT" "server 127.127.1.0" \
      "fudge 127.127.1.0 stratum 10" "threads 1" >"$conf"
    # valgrind cannot run a process that installs a seccomp filter.
    cmd=("$NTPGATED" -n -x --no-seccomp -c "$conf" -l "$OUT/$d.log")
  else
    printf '%s\n' "local stratum 10" "allow" "bindaddress $ADDR" "port $PORT" "cmdport 0" \
      "pidfile $TMP/chronyd.pid" "driftfile $TMP/chronyd.drift" >"$conf"
    cmd=("$CHRONYD" -x -d -u root -f "$conf")
  fi
  rm -f "$OUT/$d".callgrind.out*
  taskset -c 1 setpriv --bounding-set -sys_time -- valgrind --tool=callgrind \
    --callgrind-out-file="$OUT/$d.callgrind.out" "${cmd[@]}" >"$OUT/$d.valgrind.log" 2>&1 9>&- &
  DPID=$!
  ready=0
  for ((t = 0; t < 60; t++)); do
    kill -0 "$DPID" 2>/dev/null || { echo "callgrind.sh: $d exited; see bench/out/callgrind/$d.valgrind.log" >&2; exit 1; }
    line=$("$NTPLOAD" -s "$ADDR" -p "$PORT" -d 0.3 -r 20 -B 1 -t 500 -q -b "127.99.$((t + 1)).1" 2>/dev/null | tail -1) || true
    if [ "$(kv "$line" valid)" -gt 0 ] && [ "$(kv "$line" unsync)" -eq 0 ]; then ready=1; break; fi
    sleep 0.5
  done
  [ "$ready" = 1 ] || { echo "callgrind.sh: $d does not answer under valgrind" >&2; exit 1; }
  callgrind_control -z "$DPID" >/dev/null
  line=$(taskset -c 0 "$NTPLOAD" -s "$ADDR" -p "$PORT" -n "$NSRC" -c "$COUNT" -d 120 -w 64 -B 32 -t 2000 -q | tail -1)
  callgrind_control -d "$DPID" >/dev/null
  sleep 1
  dump=$(ls -t "$OUT/$d".callgrind.out.* 2>/dev/null | head -1)
  ir=$(awk '/^summary:/ { print $2 }' "$dump")
  valid=$(kv "$line" valid)
  printf 'daemon=%s sources=%s sent=%s valid=%s Ir=%s Ir_per_answer=%s\n' "$d" "$NSRC" \
    "$(kv "$line" sent)" "$valid" "$ir" "$(awk -v i="$ir" -v v="$valid" 'BEGIN { printf "%.0f", (v ? i / v : 0) }')" |
    tee -a "$OUT/results.txt"
  cleanup_one=$DPID
  kill -TERM "$cleanup_one" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$cleanup_one" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$cleanup_one" 2>/dev/null || true
  wait "$cleanup_one" 2>/dev/null || true
  DPID=
done
echo "callgrind.sh: dumps in bench/out/callgrind/ (callgrind_annotate FILE for the functions)"
