#!/usr/bin/env bash
# bench/run.sh: ntpgated against chronyd on loopback, same load, one table.
#
# Builds (release, in build/), then for every scenario of the table below starts both daemons
# side by side, each on its own 127.x address, both pinned to core 1 and started under
# `setpriv --bounding-set -sys_time`; drives each in turn with bench/ntpload pinned to core 0;
# takes each daemon's CPU time (utime+stime, /proc/PID/stat) before and after; stops both by
# their pids. Prints one table (medians over the repeats) with both daemons and the ratio
# ntpgated/chronyd. Everything it writes goes to bench/out/ (git-ignored).
# See docs/benchmark.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

usage() {
  cat <<EOF
usage: bench/run.sh [options]
  -d SECONDS   load duration per scenario and daemon (default 5, at most 300)
  -R N         repeats of every scenario, daemons alternating; the table shows medians (default 3, at most 20)
  -D LIST      daemons to run, comma-separated: ntpgated,chronyd (default both)
  -s LIST      scenarios to run, comma-separated (default all; -l lists them)
  -b DIR       build directory (default build)
  -Q PCT       a measurement during which other work took more than PCT % of the machine
               (others + steal) is disturbed: it is run again, up to 2 more times, and left
               out of the medians if an undisturbed one exists (default 5; 100 = never)
  -n           do not build; use what is in the build directory
  -l           list the scenarios and exit
  -h           this help
EOF
}

# ---- scenario table ----
# One scenario per line, fields separated by '|':
#   name | what it measures | ntpload options | ntpgated config hook | chronyd config hook | expect
# ntpload gets -s/-p/-d from the script; give it the rest (sources, rate or window, batch).
# A config hook is a bash function below that prints the scenario's extra config lines for
# that daemon (it gets the scenario name as $1), or '-' for none.
# expect: open = every reply should be a valid answer and there should be no KoD;
#         kod  = KoDs are expected; any = no check.
SCENARIOS=(
  "open-1-sat    | open, 1 source, saturate (closed loop, window 64)         | -n 1 -w 64 -B 32     | - | - | open"
  "open-10k-sat  | open, 10,000 sources, saturate (closed loop, window 64)   | -n 10000 -w 64 -B 32 | - | - | open"
  "open-1-50k    | open, 1 source, 50,000 req/s (latency below saturation)   | -n 1 -r 50000 -B 1   | - | - | open"
  # To come (the hooks below are sketches to fill in once ntpgated has the features):
  # "restrict-1k  | 1,000-entry restrict list, limited kod vs ratelimit      | -n 1000 -w 64 -B 32  | conf_ntpg_restrict1k | conf_chrony_ratelimit | kod"
  # "flood-1-20k  | 1 source flooding at 20,000 req/s (drop path)           | -n 1 -r 20000 -B 8   | conf_ntpg_limited    | conf_chrony_ratelimit | kod"
)

# Example hooks for the scenarios to come.
conf_ntpg_restrict1k() {
  local i
  echo "restrict default limited kod"
  # 1,000 entries that do not match the generator's sources (127.100.0.0/16).
  for ((i = 0; i < 1000; i++)); do
    echo "restrict 10.$((i / 250)).$((i % 250)).0 mask 255.255.255.0 nomodify"
  done
  echo "discard average 1 minimum 1"
}
conf_ntpg_limited() {
  echo "restrict default limited kod"
  echo "discard average 1 minimum 1"
}
conf_chrony_ratelimit() {
  echo "ratelimit interval 1 burst 8 leak 2"
}

# ---- settings ----
DUR=5
REPS=3
DAEMONS="ntpgated,chronyd"
ONLY=""
BUILD=build
DO_BUILD=1
LIST=0
QUIET_PCT=5
while getopts "d:R:D:s:b:Q:nlh" opt; do
  case $opt in
    d) DUR=$OPTARG ;;
    R) REPS=$OPTARG ;;
    D) DAEMONS=$OPTARG ;;
    s) ONLY=$OPTARG ;;
    b) BUILD=$OPTARG ;;
    Q) QUIET_PCT=$OPTARG ;;
    n) DO_BUILD=0 ;;
    l) LIST=1 ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || { usage >&2; exit 2; }
if ! [[ $DUR =~ ^[0-9]+$ ]] || [ "$DUR" -lt 1 ] || [ "$DUR" -gt 300 ]; then
  echo "run.sh: -d wants whole seconds in 1..300" >&2; exit 2
fi
if ! [[ $QUIET_PCT =~ ^[0-9]+$ ]] || [ "$QUIET_PCT" -gt 100 ]; then
  echo "run.sh: -Q wants a whole percentage 0..100" >&2; exit 2
fi
if ! [[ $REPS =~ ^[0-9]+$ ]] || [ "$REPS" -lt 1 ] || [ "$REPS" -gt 20 ]; then
  echo "run.sh: -R wants 1..20" >&2; exit 2
fi
for d in ${DAEMONS//,/ }; do
  case $d in ntpgated | chronyd) ;; *) echo "run.sh: -D: unknown daemon $d" >&2; exit 2 ;; esac
done

trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; s=${s%"${s##*[![:space:]]}"}; printf '%s' "$s"; }

# Parse the table into parallel arrays.
S_NAME=() S_DESC=() S_ARGS=() S_HOOK_N=() S_HOOK_C=() S_EXPECT=()
for line in "${SCENARIOS[@]}"; do
  IFS='|' read -r f1 f2 f3 f4 f5 f6 <<<"$line"
  name=$(trim "$f1")
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then continue; fi
  S_NAME+=("$name") S_DESC+=("$(trim "$f2")") S_ARGS+=("$(trim "$f3")")
  S_HOOK_N+=("$(trim "$f4")") S_HOOK_C+=("$(trim "$f5")") S_EXPECT+=("$(trim "$f6")")
done
if [ "$LIST" = 1 ]; then
  for i in "${!S_NAME[@]}"; do
    printf '%-14s %s\n%14s ntpload %s\n' "${S_NAME[$i]}" "${S_DESC[$i]}" "" "${S_ARGS[$i]}"
  done
  exit 0
fi
[ ${#S_NAME[@]} -gt 0 ] || { echo "run.sh: no scenario matches -s $ONLY (see -l)" >&2; exit 2; }

OUT=$ROOT/bench/out
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock -n 9 || { echo "run.sh: another bench/run.sh is running (bench/out/.lock)" >&2; exit 1; }

CHRONYD=$ROOT/.peers/root/usr/sbin/chronyd
NTPGATED=$ROOT/$BUILD/ntpgated
NTPLOAD=$ROOT/$BUILD/ntpload
# Loopback addresses and port of the two daemons; the generator's sources are 127.100.x.y.
ADDR_ntpgated=127.201.0.1
ADDR_chronyd=127.201.0.2
PORT=12323
CLK_TCK=$(getconf CLK_TCK)

# Pinning: daemons on core 1, generator on core 0 (with fewer cores, no pinning).
if [ "$(nproc)" -ge 2 ]; then
  PIN_D=(taskset -c 1) PIN_G=(taskset -c 0)
else
  echo "run.sh: fewer than 2 cores: no pinning, figures are not comparable" >&2
  PIN_D=() PIN_G=()
fi

# ---- build ----
if [ "$DO_BUILD" = 1 ]; then
  targets=(ntpload)
  [[ ",$DAEMONS," == *",ntpgated,"* ]] && targets+=(ntpgated)
  echo "run.sh: building ${targets[*]} (Release) in $BUILD/"
  if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$OUT/build.log" 2>&1 &&
    cmake --build "$BUILD" --target "${targets[@]}" -j"$(nproc)" >>"$OUT/build.log" 2>&1; }; then
    tail -30 "$OUT/build.log" >&2
    echo "run.sh: build failed (bench/out/build.log); to bench chronyd alone: -D chronyd" >&2
    exit 1
  fi
fi
[ -x "$NTPLOAD" ] || { echo "run.sh: no $NTPLOAD (build it, or drop -n)" >&2; exit 1; }
if [[ ",$DAEMONS," == *",ntpgated,"* ]] && [ ! -x "$NTPGATED" ]; then
  echo "run.sh: no $NTPGATED" >&2; exit 1
fi
if [[ ",$DAEMONS," == *",chronyd,"* ]] && [ ! -x "$CHRONYD" ]; then
  echo "run.sh: no $CHRONYD (scripts/deps.sh test unpacks it)" >&2; exit 1
fi

# ---- daemons ----
TMP=$(mktemp -d /tmp/ntpgate-bench.XXXXXX)
declare -A PID=()

stop_daemon() { # name
  local d=$1 p=${PID[$1]:-} i
  [ -n "$p" ] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
  fi
  wait "$p" 2>/dev/null || true
  PID[$d]=""
}
GEN_PID=
cleanup() {
  local d
  if [ -n "$GEN_PID" ]; then kill -TERM "$GEN_PID" 2>/dev/null || true; wait "$GEN_PID" 2>/dev/null || true; fi
  for d in "${!PID[@]}"; do stop_daemon "$d"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

write_config() { # daemon scenario-index -> config path
  local d=$1 i=$2 conf=$TMP/$1.conf hook
  if [ "$d" = ntpgated ]; then
    hook=${S_HOOK_N[$i]}
    {
      echo "interface listen $ADDR_ntpgated"
      echo "port $PORT"
      echo "server 127.127.1.0"
      echo "fudge 127.127.1.0 stratum 10"
      # One worker: the daemon has one core (core 1), as chronyd has.
      echo "threads 1"
      [ "$hook" = - ] || "$hook" "${S_NAME[$i]}"
    } >"$conf"
  else
    hook=${S_HOOK_C[$i]}
    {
      echo "local stratum 10"
      echo "allow"
      echo "bindaddress $ADDR_chronyd"
      echo "port $PORT"
      echo "cmdport 0"
      echo "pidfile $TMP/chronyd.pid"
      echo "driftfile $TMP/chronyd.drift"
      [ "$hook" = - ] || "$hook" "${S_NAME[$i]}"
    } >"$conf"
  fi
  echo "$conf"
}

start_daemon() { # daemon scenario-index
  local d=$1 i=$2 conf log
  conf=$(write_config "$d" "$i")
  log=$OUT/${S_NAME[$i]}.$d.log
  cp "$conf" "$OUT/${S_NAME[$i]}.$d.conf"
  if [ "$d" = ntpgated ]; then
    "${PIN_D[@]}" setpriv --bounding-set -sys_time -- \
      "$NTPGATED" -n -x -c "$conf" -l "$log" >"$log.stderr" 2>&1 9>&- &
  else
    "${PIN_D[@]}" setpriv --bounding-set -sys_time -- \
      "$CHRONYD" -x -d -u root -f "$conf" >"$log" 2>&1 9>&- &
  fi
  PID[$d]=$!
}

# The value of key in a key=value line.
kv() { # line key
  local w
  for w in $1; do [ "${w%%=*}" = "$2" ] && { printf '%s' "${w#*=}"; return; }; done
  printf '0'
}

wait_ready() { # daemon scenario-index: until it answers synchronised (or 20 s)
  local d=$1 i=$2 line valid=0 unsync=0 deadline=$((SECONDS + 20))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "${PID[$d]}" 2>/dev/null; then
      echo "run.sh: $d exited at start; its log:" >&2
      tail -20 "$OUT/${S_NAME[$i]}.$d.log"* >&2 || true
      return 1
    fi
    line=$("$NTPLOAD" -s "$(addr_of "$d")" -p "$PORT" -d 0.2 -r 50 -B 1 -t 200 -q 2>/dev/null | tail -1) || true
    valid=$(kv "$line" valid) unsync=$(kv "$line" unsync)
    if [ "$valid" -gt 0 ] && [ "$unsync" -eq 0 ]; then return 0; fi
    sleep 0.3
  done
  if [ "$valid" -gt 0 ]; then
    echo "run.sh: warning: $d still answers unsynchronised; benching it anyway" >&2
    return 0
  fi
  echo "run.sh: $d does not answer on $(addr_of "$d"):$PORT" >&2
  return 1
}
addr_of() { local v=ADDR_$1; printf '%s' "${!v}"; }

proc_ticks() { # pid: utime+stime in clock ticks (fields 14 and 15, after the ")" of comm)
  local s
  s=$(<"/proc/$1/stat")
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo $((${12} + ${13}))
}
core_ticks() { # core ("" = all of them) -> "busy total steal" ticks from /proc/stat (tick-sampled)
  # busy: user nice system irq softirq; steal: time the hypervisor gave our vCPUs to others.
  awk -v c="cpu$1" '$1 == c { t = 0; for (k = 2; k <= 9; k++) t += $k; print $2 + $3 + $4 + $7 + $8, t, $9 }' /proc/stat
}
sock_drops() { # addr -> drops counter of the UDP socket bound to addr:PORT
  local hex a b c d
  IFS=. read -r a b c d <<<"$1"
  hex=$(printf '%02X%02X%02X%02X:%04X' "$d" "$c" "$b" "$a" "$PORT")
  awk -v a="$hex" '$2 == a { d += $NF } END { print d + 0 }' /proc/net/udp
}

snap_procs() { # -> "pid comm ticks" of every process (comm with blanks squeezed to _)
  cat /proc/[0-9]*/stat 2>/dev/null | awk '{
    lp = index($0, "("); n = split($0, a, ") "); rest = a[n]
    comm = substr($0, lp + 1, length($0) - length(rest) - lp - 2); gsub(/[^A-Za-z0-9._\/:-]/, "_", comm)
    split(rest, f, " "); print substr($0, 1, lp - 2), comm, f[12] + f[13] }'
}
top_others() { # before-file after-file pids-to-skip... -> "comm:ticks,..." (busiest 3)
  local b=$1 a=$2
  shift 2
  awk -v skip=" $* " 'NR == FNR { t[$1] = $3; next }
    index(skip, " " $1 " ") == 0 { d = $3 - t[$1]; if (d > 0) print d, $2 }' "$b" "$a" |
    sort -rn | head -3 | awk '{ printf "%s%s:%s", (NR > 1 ? "," : ""), $2, $1 } END { if (NR == 0) printf "-" }'
}

# Before a measurement: wait (at most 10 s) for a half second in which the machine, less
# our idle daemons, is at most QUIET_PCT % busy.
wait_quiet() {
  local t a0 b0 s0 a1 b1 s1 o0 o1 d pct
  for ((t = 0; t < 20; t++)); do
    read -r a0 b0 s0 <<<"$(core_ticks "")"
    o0=0; for d in "${!PID[@]}"; do [ -z "${PID[$d]}" ] || o0=$((o0 + $(proc_ticks "${PID[$d]}"))); done
    sleep 0.5
    read -r a1 b1 s1 <<<"$(core_ticks "")"
    o1=0; for d in "${!PID[@]}"; do [ -z "${PID[$d]}" ] || o1=$((o1 + $(proc_ticks "${PID[$d]}"))); done
    pct=$(awk -v b=$((a1 - a0 + s1 - s0 - (o1 - o0))) -v t=$((b1 - b0)) 'BEGIN { printf "%d", (t ? 100 * b / t : 0) }')
    [ "$pct" -gt "$QUIET_PCT" ] || return 0
    [ "$t" -gt 0 ] || echo "  (machine ${pct}% busy with other work; waiting up to 10 s for it to calm down)"
  done
  return 0
}

# ---- run ----
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=$OUT/results-$STAMP.tsv
: >"$RES"
HEAD="$(date -u '+%Y-%m-%d %H:%M:%S UTC') | $(uname -srm) | $(nproc) cores | ${DUR} s x ${REPS} per scenario and daemon"
echo "run.sh: $HEAD"
echo "run.sh: chronyd: $("$CHRONYD" -v 2>/dev/null | head -1 || echo '?')"

run_one() { # daemon scenario-index rep
  local d=$1 i=$2 r=$3 p=${PID[$1]} c0 c1 line f args
  read -r -a args <<<"${S_ARGS[$i]}"
  f=$OUT/${S_NAME[$i]}.$d.$r.txt
  local drops0 drops1 a0 b0 a1 b1 st0 st1 o0=0 o1=0 od
  for od in "${!PID[@]}"; do [ "$od" = "$d" ] || [ -z "${PID[$od]}" ] || o0=$(proc_ticks "${PID[$od]}"); done
  drops0=$(sock_drops "$(addr_of "$d")")
  snap_procs >"$TMP/procs.0"
  read -r a0 b0 st0 <<<"$(core_ticks "")"
  c0=$(proc_ticks "$p")
  # In the background and waited for, so that a signal to this script acts at once.
  "${PIN_G[@]}" "$NTPLOAD" -s "$(addr_of "$d")" -p "$PORT" -d "$DUR" "${args[@]}" >"$f" 2>&1 &
  GEN_PID=$!
  wait "$GEN_PID" || true
  GEN_PID=
  c1=$(proc_ticks "$p")
  read -r a1 b1 st1 <<<"$(core_ticks "")"
  snap_procs >"$TMP/procs.1"
  drops1=$(sock_drops "$(addr_of "$d")")
  for od in "${!PID[@]}"; do [ "$od" = "$d" ] || [ -z "${PID[$od]}" ] || o1=$(proc_ticks "${PID[$od]}"); done
  line=$(grep '^tool=ntpload ' "$f" | tail -1) || { echo "run.sh: ntpload failed:" >&2; cat "$f" >&2; return 1; }
  local busy others steal threads top
  steal=$(awk -v s=$((st1 - st0)) -v t=$((b1 - b0)) 'BEGIN { printf "%.1f", (t ? 100 * s / t : 0) }')
  # shellcheck disable=SC2046
  top=$(top_others "$TMP/procs.0" "$TMP/procs.1" $$ $(printf '%s ' "${PID[@]}"))
  threads=$(find "/proc/$p/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  # The daemon's share of its core: its own CPU time over the load's duration.
  busy=$(awk -v c=$((c1 - c0)) -v clk="$CLK_TCK" -v s="$(kv "$line" duration)" \
    'BEGIN { printf "%.1f", (s > 0 ? 100 * c / clk / s : 0) }')
  # CPU on the whole machine that was neither this daemon's, the idle one's nor ntpload's:
  # other sessions' work, which makes a run less trustworthy.
  others=$(awk -v b=$((a1 - a0)) -v t=$((b1 - b0)) -v dmn=$((c1 - c0 + o1 - o0)) -v clk="$CLK_TCK" \
    -v gen="$(kv "$line" gen_cpu_us)" -v sent="$(kv "$line" sent)" \
    'BEGIN { o = b - dmn - gen * sent / 1e6 * clk; if (o < 0) o = 0; printf "%.1f", (t ? 100 * o / t : 0) }')
  DISTURBED=0
  if awk -v o="$others" -v s="$steal" -v q="$QUIET_PCT" 'BEGIN { exit !(o + s > q) }'; then DISTURBED=1; fi
  printf 'scenario=%s daemon=%s rep=%s cpu_ticks=%s clk_tck=%s daemon_cpu_pct=%s others_pct=%s steal_pct=%s disturbed=%s sock_drops=%s threads=%s top_others=%s %s\n' \
    "${S_NAME[$i]}" "$d" "$r" $((c1 - c0)) "$CLK_TCK" "$busy" "$others" "$steal" "$DISTURBED" $((drops1 - drops0)) "$threads" "$top" "$line" >>"$RES"
  local valid kod inv
  valid=$(kv "$line" valid) kod=$(kv "$line" kod) inv=$(kv "$line" invalid)
  printf '  %-9s rep %s: %s replies/s, p50 %s us, p99 %s us, CPU %s ticks, daemon CPU %s%%, others %s%%, steal %s%%\n' \
    "$d" "$r" "$(kv "$line" rps)" "$(kv "$line" p50_us)" "$(kv "$line" p99_us)" $((c1 - c0)) "$busy" "$others" "$steal"
  if [ "$DISTURBED" = 1 ]; then
    echo "run.sh: warning: disturbed: other work took ${others}% of the machine (busiest, in ticks: $top), steal ${steal}%" >&2
  fi
  case ${S_EXPECT[$i]} in
    open)
      [ "$valid" -gt 0 ] || echo "run.sh: warning: $d gave no valid reply" >&2
      [ "$inv" -eq 0 ] && [ "$kod" -eq 0 ] ||
        echo "run.sh: warning: $d: $inv invalid replies and $kod KoDs in an open scenario" >&2 ;;
    kod) [ "$kod" -gt 0 ] || echo "run.sh: warning: $d sent no KoD" >&2 ;;
  esac
}

for i in "${!S_NAME[@]}"; do
  echo "run.sh: scenario ${S_NAME[$i]}: ${S_DESC[$i]}"
  order=()
  for d in ${DAEMONS//,/ }; do order+=("$d"); done
  for d in "${order[@]}"; do start_daemon "$d" "$i"; done
  for d in "${order[@]}"; do wait_ready "$d" "$i" || exit 1; done
  for ((r = 1; r <= REPS; r++)); do
    # Alternate which daemon goes first, so that drift in the machine spreads over both.
    if ((r % 2 == 0)); then mapfile -t run < <(printf '%s\n' "${order[@]}" | tac); else run=("${order[@]}"); fi
    for d in "${run[@]}"; do
      for ((attempt = 1; attempt <= 3; attempt++)); do
        kill -0 "${PID[$d]}" 2>/dev/null || { echo "run.sh: $d died" >&2; exit 1; }
        wait_quiet
        run_one "$d" "$i" "$r"
        if [ "$DISTURBED" = 0 ] || [ "$attempt" -ge 3 ]; then break; fi
        echo "  (running it again)"
      done
    done
  done
  for d in "${order[@]}"; do stop_daemon "$d"; done
done

# ---- table ----
TABLE=$OUT/table-$STAMP.txt
{
  echo "ntpgate benchmark: $HEAD"
  echo "generator: ntpload on core 0; daemons on core 1 (ntpgated $ADDR_ntpgated, chronyd $ADDR_chronyd, port $PORT)"
  echo
  awk -v order="$(printf '%s,' "${S_NAME[@]}")" '
  function med(key,   n, i, j, v, a) {
    n = cnt[key]; if (n == 0) return ""
    for (i = 1; i <= n; i++) a[i] = val[key, i] + 0
    for (i = 2; i <= n; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function put(s, d, m, v,   k) { k = s SUBSEP d SUBSEP m; cnt[k]++; val[k, cnt[k]] = v }
  function fmt(v, m) {
    if (v == "") return "-"
    if (m ~ /^p[0-9]/) return sprintf("%.1f", v)
    if (m ~ /us\/(answer|request|req)$/) return sprintf("%.2f", v)
    if (m ~ /%$/) return sprintf("%.1f", v)
    return sprintf("%.0f", v)
  }
  function parse(l,   i, p, nf, w) {
    split("", f)
    nf = split(l, w, " ")
    for (i = 1; i <= nf; i++) { p = index(w[i], "="); f[substr(w[i], 1, p - 1)] = substr(w[i], p + 1) }
  }
  function take(l,   s, d, answers, cpu_us) {
    parse(l)
    s = f["scenario"]; d = f["daemon"]
    used[s, d]++; if (f["disturbed"] == 1) useddist[s, d]++
    answers = f["valid"] + f["kod"]
    cpu_us = f["cpu_ticks"] / f["clk_tck"] * 1e6
    put(s, d, "replies/s", f["rps"])
    put(s, d, "KoD/s", f["kod_per_s"])
    put(s, d, "lost", f["lost"])
    put(s, d, "server socket drops", f["sock_drops"])
    put(s, d, "p50 us", f["p50_us"])
    put(s, d, "p90 us", f["p90_us"])
    put(s, d, "p99 us", f["p99_us"])
    put(s, d, "p99.9 us", f["p999_us"])
    put(s, d, "CPU us/answer", answers ? cpu_us / answers : "")
    put(s, d, "CPU us/request", f["sent"] ? cpu_us / f["sent"] : "")
    put(s, d, "daemon CPU %", f["daemon_cpu_pct"])
    put(s, d, "generator CPU us/req", f["gen_cpu_us"])
    put(s, d, "others CPU %", f["others_pct"])
    put(s, d, "steal %", f["steal_pct"])
    put(s, d, "daemon threads", f["threads"])
  }
  function runs(s, d) {
    if (!used[s, d]) return "-"
    return used[s, d] (useddist[s, d] ? "(" useddist[s, d] "!)" : "")
  }
  {
    parse($0)
    k = f["scenario"] SUBSEP f["daemon"]
    nrun[k]++; if (f["disturbed"] == 1) ndist[k]++
    line[NR] = $0; key[NR] = k; dist[NR] = (f["disturbed"] == 1)
  }
  END {
    # A disturbed measurement counts only when all of its scenario and daemon were disturbed.
    for (n = 1; n <= NR; n++)
      if (!dist[n] || ndist[key[n]] == nrun[key[n]]) take(line[n])
    nm = split("replies/s,KoD/s,lost,server socket drops,p50 us,p90 us,p99 us,p99.9 us,CPU us/answer,CPU us/request,daemon CPU %,generator CPU us/req,others CPU %,steal %,daemon threads", M, ",")
    ns = split(order, S, ",")
    printf "%-14s %-22s %12s %12s %8s\n", "scenario", "figure", "ntpgated", "chronyd", "ratio"
    for (i = 1; i <= ns; i++) {
      if (S[i] == "") continue
      printf "%-14s %-22s %12s %12s %8s\n", S[i], "measurements used", runs(S[i], "ntpgated"), runs(S[i], "chronyd"), "-"
      for (j = 1; j <= nm; j++) {
        m = M[j]; a = med(S[i] SUBSEP "ntpgated" SUBSEP m); b = med(S[i] SUBSEP "chronyd" SUBSEP m)
        if (a == "" && b == "") continue
        r = (a != "" && b != "" && b + 0 != 0 && m !~ /lost|drops|KoD|others|steal|threads/) ? sprintf("%.2f", a / b) : "-"
        printf "%-14s %-22s %12s %12s %8s\n", "", m, fmt(a, m), fmt(b, m), r
      }
    }
    print ""
    print "Figures are medians over the measurements used; N(k!) means k of them were disturbed by other work."
    print "ratio = ntpgated / chronyd: above 1 is better for replies/s, below 1 for latency and CPU."
    print "CPU us/answer = daemon utime+stime (/proc/PID/stat) over the run / (valid replies + KoDs)."
  }' "$RES"
} | tee "$TABLE"
ln -sf "$(basename "$TABLE")" "$OUT/table-latest.txt"
ln -sf "$(basename "$RES")" "$OUT/results-latest.tsv"
echo "run.sh: raw results in bench/out/$(basename "$RES"), table in bench/out/$(basename "$TABLE")"
