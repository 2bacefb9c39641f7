#!/usr/bin/env bash
# bench/metrics.sh: does a Prometheus scraping the metrics endpoint every second cost the
# serving path anything? One ntpgated (threads 1, `metrics listen`), saturated by
# bench/ntpload (closed loop, 1,000 sources); phases alternate without and with a real
# Prometheus (Debian's package, scrape_interval 1s) scraping it. Each phase takes the
# daemon's CPU time (utime+stime, /proc/PID/stat) and the replies ntpload validated, and
# prints CPU microseconds per answer; the last lines are the medians and their ratio
# (with / without). Daemon pinned to core 1, generator to core 0 (when there are 2 cores).
# Everything runs on 127.99.0.1 (loopback), under setpriv without CAP_SYS_TIME and with -x;
# processes are stopped by pid. Files go to bench/out/metrics-*/ (git-ignored).
# Usage: bench/metrics.sh [-b BUILD] [-d SECONDS] [-R REPEATS]   (make bench-metrics)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build
DUR=5
REPS=3
while getopts "b:d:R:h" o; do
  case $o in
    b) BUILD=$OPTARG ;;
    d) DUR=$OPTARG ;;
    R) REPS=$OPTARG ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
[ "$REPS" -ge 1 ] && [ "$REPS" -le 20 ] || { echo "-R 1..20" >&2; exit 2; }
[ "$DUR" -ge 1 ] && [ "$DUR" -le 60 ] || { echo "-d 1..60" >&2; exit 2; }
for f in "$BUILD/ntpgated" "$BUILD/ntpload" /usr/bin/prometheus; do
  [ -x "$f" ] || { echo "missing $f (build, scripts/deps.sh)" >&2; exit 1; }
done
ADDR=127.99.0.1
PORT=12399
MPORT=19975
PPORT=19976
OUT=bench/out/metrics-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
SETPRIV=(setpriv --bounding-set -sys_time --)
PIN_D=() PIN_G=()
if [ "$(nproc)" -ge 2 ]; then PIN_D=(taskset -c 1) PIN_G=(taskset -c 0); fi

cat >"$OUT/ntpgate.conf" <<CONF
interface listen $ADDR
port $PORT
threads 1
server 127.127.1.0
fudge 127.127.1.0 stratum 5
metrics listen $ADDR port $MPORT
CONF
cat >"$OUT/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: ntpgate
    static_configs:
      - targets: ["$ADDR:$MPORT"]
CONF

DPID="" PPID_PROM=""
stop_all() {
  [ -n "$PPID_PROM" ] && kill "$PPID_PROM" 2>/dev/null && wait "$PPID_PROM" 2>/dev/null || true
  [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
}
trap stop_all EXIT

proc_ticks() { # pid: utime+stime in clock ticks
  local s
  s=$(<"/proc/$1/stat")
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo $((${12} + ${13}))
}

"${PIN_D[@]}" "${SETPRIV[@]}" "$BUILD/ntpgated" -n -x -c "$OUT/ntpgate.conf" -l "$OUT/ntpgated.log" &
DPID=$!
for _ in $(seq 50); do
  grep -q running "$OUT/ntpgated.log" 2>/dev/null && break
  sleep 0.1
done
HZ=$(getconf CLK_TCK)

start_prometheus() {
  rm -rf "$OUT/tsdb"
  "${SETPRIV[@]}" /usr/bin/prometheus --config.file="$OUT/prometheus.yml" \
    --storage.tsdb.path="$OUT/tsdb" --web.listen-address="$ADDR:$PPORT" --log.level=warn \
    >"$OUT/prometheus.log" 2>&1 &
  PPID_PROM=$!
  for _ in $(seq 100); do # ready and scraping (bounded: 20 s)
    curl -sf "http://$ADDR:$PPORT/api/v1/query?query=up" 2>/dev/null | grep -q '"1"\]' && return
    sleep 0.2
  done
  echo "prometheus did not start scraping" >&2
  exit 1
}

phase() { # label -> prints "label us_per_answer replies"
  local t0 t1 line valid
  t0=$(proc_ticks "$DPID")
  line=$("${PIN_G[@]}" "$BUILD/ntpload" -s "$ADDR" -p "$PORT" -n 1000 -w 64 -B 32 -d "$DUR" -q | tail -1)
  t1=$(proc_ticks "$DPID")
  valid=$(sed -n 's/.* valid=\([0-9]*\).*/\1/p' <<<"$line")
  echo "$line" >>"$OUT/ntpload.txt"
  awk -v l="$1" -v t=$((t1 - t0)) -v hz="$HZ" -v n="$valid" \
    'BEGIN { printf "%s %.3f %d\n", l, n ? t / hz * 1e6 / n : 0, n }'
}

: >"$OUT/phases.txt"
for r in $(seq "$REPS"); do
  phase without | tee -a "$OUT/phases.txt"
  start_prometheus
  phase with | tee -a "$OUT/phases.txt"
  scrapes=$(curl -s "http://$ADDR:$MPORT/metrics" |
    sed -n 's/^ntpgate_metrics_http_requests_total{result="served"} //p')
  echo "  (repeat $r: $scrapes scrapes served so far)"
  kill "$PPID_PROM"
  wait "$PPID_PROM" 2>/dev/null || true
  PPID_PROM=""
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
without=$(awk '$1 == "without" { print $2 }' "$OUT/phases.txt" | median)
with=$(awk '$1 == "with" { print $2 }' "$OUT/phases.txt" | median)
echo "median CPU per answer without scraping: $without us"
echo "median CPU per answer with a 1 s scrape: $with us"
awk -v a="$with" -v b="$without" 'BEGIN { printf "ratio with/without: %.3f\n", a / b }'
echo "files: $OUT"
