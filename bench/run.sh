#!/usr/bin/env bash
# bench/run.sh: ntpgated against chronyd on loopback, same load, one table.
#
# Builds (release, in build-bench/), then for every scenario of the table below starts both daemons
# side by side, each on its own 127.x address, both pinned to core 1 and started under
# `setpriv --bounding-set -sys_time`; drives each in turn with bench/ntpload pinned to core 0;
# takes each daemon's CPU time (utime+stime, /proc/PID/stat) before and after; stops both by
# their pids. Prints one table (medians over the repeats) with both daemons and the ratio
# ntpgated/chronyd, then a summary table (replies/s, CPU per answer, notes). Everything it
# writes goes to bench/out/ (git-ignored). See docs/benchmark.md and docs/performance.md.
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
  -b DIR       build directory (default build-bench, apart from make's build/)
  -Q PCT       a measurement during which other work took more than PCT % of the machine
               (others + steal) is disturbed: it is run again, up to 2 more times, and left
               out of the medians if an undisturbed one exists (default 5; 100 = never)
  -q           quick smoke test: 1 s x 1 repeat, -Q 100, mon-1m with 100,000 sources (about a minute)
  -n           do not build; use what is in the build directory
  -l           list the scenarios and exit
  -h           this help
EOF
}

# ---- scenario table ----
# One scenario per line, fields separated by '|':
#   name | what it measures | ntpload options | ntpgated config hook | chronyd config hook | expect
# ntpload gets -s/-p/-d from the script; give it the rest (sources, rate or window, batch).
# @SEQ@ in the options becomes a number that is new for every measurement (1..250), so that a
# scenario can give each measurement a source address no daemon has seen yet.
# A config hook is a bash function below that prints the scenario's extra config lines for
# that daemon (it gets the scenario name as $1), or '-' for none.
# expect: open  = every reply should be a valid answer and there should be no KoD;
#         flood = rate-limited: some answers (the leak), most requests unanswered;
#         mon   = not a load line: the monitor-table run (run_mon below; options ignored);
#         kod   = KoDs are expected; any = no check.
SCENARIOS=(
  "open-1-sat          | open, 1 source, saturate (closed loop, window 64)                    | -n 1 -w 64 -B 32     | - | - | open"
  "open-10k-sat        | open, 10,000 sources, saturate (closed loop, window 64)              | -n 10000 -w 64 -B 32 | - | - | open"
  "open-1-50k          | open, 1 source, 50,000 req/s (latency below saturation)              | -n 1 -r 50000 -B 1   | - | - | open"
  "restrict-1k-limited | 1,000-entry restrict/deny list + limited kod / ratelimit, 10,000 sources, saturate, every request within the limits | -n 10000 -w 64 -B 32 | conf_ntpg_restrict1k | conf_chrony_restrict1k | open"
  "flood-1-limited     | 1 source flooding at 20,000 req/s, limited kod / ratelimit (drop path) | -n 1 -r 20000 -B 8 -t 200 -b 127.110.@SEQ@.1 | conf_ntpg_flood | conf_chrony_flood | flood"
  "mon-1m              | monitor table: 10,000 known sources, then 1,000,000 new ones (filling), then 1,000,000 more (full, evicting) | - | conf_ntpg_mon | conf_chrony_mon | mon"
)

# 1,000 restrict entries, none of which matches a generator source (127.100.0.0/16) or a
# daemon (127.201.0.0/16): 500 /24 networks in 10.0.0.0/8 and 500 hosts in 127.79.0.0/16.
restrict1k_nets() { # -> "a.b.c.d prefix" lines
  local k
  for ((k = 0; k < 500; k++)); do echo "10.$((k / 250)).$((k % 250)).0 24"; done
  for ((k = 0; k < 500; k++)); do echo "127.79.$((k / 250)).$((k % 250 + 1)) 32"; done
}
conf_ntpg_restrict1k() {
  local a p
  echo "restrict default limited kod"
  while read -r a p; do
    if [ "$p" = 32 ]; then echo "restrict $a ignore"; else echo "restrict $a mask 255.255.255.0 ignore"; fi
  done < <(restrict1k_nets)
  # ntpd's algorithm with average 0 and minimum 0: head 1, each packet adds head-2 = -1 to
  # the leak counter, so it never reaches the limit: every packet runs the limiter and is served.
  echo "discard average 0 minimum 0"
}
conf_chrony_restrict1k() {
  local a p
  while read -r a p; do echo "deny $a/$p"; done < <(restrict1k_nets)
  # 1,024 responses/s per address, far above the ~23/s each of 10,000 sources sends here, so
  # the limiter runs on every packet and never trips. 2 MiB of client log = 16,384
  # addresses (chronyd's 128 bytes each), like ntpgated's default 16,384-record MRU table.
  echo "ratelimit interval -10 burst 16 leak 4"
  echo "clientloglimit 2097152"
}
conf_ntpg_flood() {
  echo "restrict default limited kod"
  # ntpd's defaults written out, plus ours: leak 1 in 16, 1 KoD/s over all clients.
  echo "discard average 3 minimum 2 leak 4 kodlimit 1"
}
conf_chrony_flood() {
  # chronyd's defaults, but leak 4 (1 in 16) like ntpgated's. chronyd 4.3 sends no KoD.
  echo "ratelimit interval 3 burst 8 leak 4"
}
conf_ntpg_mon() {
  echo "mru maxdepth $MON_DEPTH"
  # When the table is full, recycle the least recently seen record with probability
  # age/1 s: every newcomer of the evict phase takes the oldest record (ntpd's default 3000
  # would leave most newcomers untracked, a cheaper path than the one we want to measure).
  echo "discard monitor 1"
}
conf_chrony_mon() {
  echo "clientloglimit $((MON_DEPTH * 128))"
}

# ---- settings ----
DUR=5
REPS=3
DAEMONS="ntpgated,chronyd"
ONLY=""
BUILD=build-bench
DO_BUILD=1
LIST=0
QUIET_PCT=5
QUICK=0
DUR_SET=0 REPS_SET=0 QPCT_SET=0
while getopts "d:R:D:s:b:Q:qnlh" opt; do
  case $opt in
    d) DUR=$OPTARG DUR_SET=1 ;;
    R) REPS=$OPTARG REPS_SET=1 ;;
    q) QUICK=1 ;;
    D) DAEMONS=$OPTARG ;;
    s) ONLY=$OPTARG ;;
    b) BUILD=$OPTARG ;;
    Q) QUIET_PCT=$OPTARG QPCT_SET=1 ;;
    n) DO_BUILD=0 ;;
    l) LIST=1 ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || { usage >&2; exit 2; }
# mon-1m: MON_N new sources per phase, in a table of MON_DEPTH records (ntpgated's mru
# maxdepth; chronyd's clientloglimit holds as many); MON_MAXD bounds each phase in seconds.
MON_N=1000000 MON_DEPTH=1048576 MON_MAXD=120
if [ "$QUICK" = 1 ]; then
  [ "$DUR_SET" = 1 ] || DUR=1
  [ "$REPS_SET" = 1 ] || REPS=1
  [ "$QPCT_SET" = 1 ] || QUIET_PCT=100 # a smoke test neither waits for quiet nor retries
  MON_N=100000 MON_DEPTH=131072 MON_MAXD=30
fi
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
    printf '%-20s %s\n%20s ntpload %s\n' "${S_NAME[$i]}" "${S_DESC[$i]}" "" "${S_ARGS[$i]}"
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
  : >"$log"
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
      tail -n 20 "$OUT/${S_NAME[$i]}.$d.log"* >&2 || true
      return 1
    fi
    # A fresh probe source each time (127.99.x.1): under `limited` a source that asked a
    # moment ago gets no answer, and the load's sources must stay unknown to the daemon.
    PROBE=$((PROBE % 250 + 1))
    line=$("$NTPLOAD" -s "$(addr_of "$d")" -p "$PORT" -d 0.2 -r 50 -B 1 -t 200 -q -b "127.99.$PROBE.1" 2>/dev/null | tail -1) || true
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
PROBE=0

vmrss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

# ntpgated's counters: SIGUSR1 makes it log "stats: NAME VALUE" lines; wait for the new set
# (at most 3 s) and print them as "srv_NAME=VALUE ...". Prints nothing for chronyd.
ntpg_stats() { # daemon log
  local d=$1 log=$2 n0 n1 k
  [ "$d" = ntpgated ] && [ -n "${PID[$d]}" ] || return 0
  n0=$(grep -c 'stats: kod_refused ' "$log" 2>/dev/null || true)
  kill -USR1 "${PID[$d]}" 2>/dev/null || return 0
  for ((k = 0; k < 30; k++)); do
    n1=$(grep -c 'stats: kod_refused ' "$log" 2>/dev/null || true)
    [ "${n1:-0}" -gt "${n0:-0}" ] && break
    sleep 0.1
  done
  awk '{ for (i = 1; i < NF; i++) if ($i == "stats:") v[$(i + 1)] = $(i + 2) }
    END { for (k in v) printf "srv_%s=%s ", k, v[k] }' "$log"
}
# "srv_X=a ..." before and after -> "dsrv_X=(b-a) ..." for the counters that moved.
stats_delta() { # before after
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, A, " "); for (i = 1; i <= n; i++) { p = index(A[i], "="); v[substr(A[i], 1, p - 1)] = substr(A[i], p + 1) }
    n = split(b, B, " "); for (i = 1; i <= n; i++) { p = index(B[i], "="); k = substr(B[i], 1, p - 1)
      d = substr(B[i], p + 1) - v[k]; if (d != 0 && k !~ /^srv_mon_(capacity|memory_bytes|entries)$/) printf "d%s=%d ", k, d }
  }' </dev/null
}

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
  # A process may end between the glob and the read: that is no error (pipefail is on).
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{
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
QUICK_NOTE=""
[ "$QUICK" = 0 ] || QUICK_NOTE=" (quick mode -q)"
HEAD="$(date -u '+%Y-%m-%d %H:%M:%S UTC') | $(uname -srm) | $(nproc) cores | ${DUR} s x ${REPS} per scenario and daemon${QUICK_NOTE} | mon-1m: $MON_N sources per phase, table of $MON_DEPTH"
echo "run.sh: $HEAD"
echo "run.sh: chronyd: $("$CHRONYD" -v 2>/dev/null | head -1 || echo '?')"

SEQ=0
# One measurement: ntpload against daemon d with the given options, CPU before/after.
# Appends a results line (label = scenario column) and sets DISTURBED.
measure() { # daemon label expect duration extra-fields ntpload-options...
  local d=$1 label=$2 expect=$3 dur=$4 extra=$5 p=${PID[$1]} c0 c1 line f
  shift 5
  local args=("$@")
  f=$OUT/$label.$d.$SEQ.txt
  local log=$OUT/${CUR_SCEN}.$d.log st0 st1
  local drops0 drops1 a0 b0 a1 b1 stl0 stl1 o0=0 o1=0 od
  st0=$(ntpg_stats "$d" "$log")
  for od in "${!PID[@]}"; do [ "$od" = "$d" ] || [ -z "${PID[$od]}" ] || o0=$(proc_ticks "${PID[$od]}"); done
  drops0=$(sock_drops "$(addr_of "$d")")
  snap_procs >"$TMP/procs.0"
  read -r a0 b0 stl0 <<<"$(core_ticks "")"
  c0=$(proc_ticks "$p")
  # In the background and waited for, so that a signal to this script acts at once.
  "${PIN_G[@]}" "$NTPLOAD" -s "$(addr_of "$d")" -p "$PORT" -d "$dur" "${args[@]}" >"$f" 2>&1 &
  GEN_PID=$!
  wait "$GEN_PID" || true
  GEN_PID=
  c1=$(proc_ticks "$p")
  read -r a1 b1 stl1 <<<"$(core_ticks "")"
  snap_procs >"$TMP/procs.1"
  drops1=$(sock_drops "$(addr_of "$d")")
  for od in "${!PID[@]}"; do [ "$od" = "$d" ] || [ -z "${PID[$od]}" ] || o1=$(proc_ticks "${PID[$od]}"); done
  st1=$(ntpg_stats "$d" "$log")
  line=$(grep '^tool=ntpload ' "$f" | tail -1) || { echo "run.sh: ntpload failed:" >&2; cat "$f" >&2; return 1; }
  local busy others steal threads top
  steal=$(awk -v s=$((stl1 - stl0)) -v t=$((b1 - b0)) 'BEGIN { printf "%.1f", (t ? 100 * s / t : 0) }')
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
  printf 'scenario=%s daemon=%s rep=%s cpu_ticks=%s clk_tck=%s daemon_cpu_pct=%s others_pct=%s steal_pct=%s disturbed=%s sock_drops=%s threads=%s top_others=%s %s%s %s\n' \
    "$label" "$d" "$SEQ" $((c1 - c0)) "$CLK_TCK" "$busy" "$others" "$steal" "$DISTURBED" $((drops1 - drops0)) "$threads" "$top" \
    "$extra" "$(stats_delta "$st0" "$st1")$(grep -o 'srv_mon_[a-z_]*=[0-9]*' <<<"$st1" | tr '\n' ' ')" "$line" >>"$RES"
  local valid kod inv sent
  valid=$(kv "$line" valid) kod=$(kv "$line" kod) inv=$(kv "$line" invalid) sent=$(kv "$line" sent)
  printf '  %-9s %s: %s replies/s of %s sent/s, KoD %s, p50 %s us, p99 %s us, CPU %s ticks, daemon CPU %s%%, others %s%%, steal %s%%\n' \
    "$d" "$label" "$(kv "$line" rps)" "$(kv "$line" sent_per_s)" "$kod" "$(kv "$line" p50_us)" "$(kv "$line" p99_us)" \
    $((c1 - c0)) "$busy" "$others" "$steal"
  if [ "$DISTURBED" = 1 ]; then
    echo "run.sh: warning: disturbed: other work took ${others}% of the machine (busiest, in ticks: $top), steal ${steal}%" >&2
  fi
  case $expect in
    open)
      [ "$valid" -gt 0 ] || echo "run.sh: warning: $d gave no valid reply" >&2
      [ "$inv" -eq 0 ] && [ "$kod" -eq 0 ] ||
        echo "run.sh: warning: $d: $inv invalid replies and $kod KoDs in an open scenario" >&2 ;;
    flood)
      [ "$inv" -eq 0 ] || echo "run.sh: warning: $d: $inv invalid replies" >&2
      [ "$valid" -gt 0 ] || echo "run.sh: warning: $d answered the flooder not at all (no leak?)" >&2
      [ $((4 * (valid + kod))) -lt "$sent" ] || echo "run.sh: warning: $d answered $valid + $kod KoD of $sent: not limited?" >&2 ;;
    kod) [ "$kod" -gt 0 ] || echo "run.sh: warning: $d sent no KoD" >&2 ;;
  esac
}

run_one() { # daemon scenario-index
  local d=$1 i=$2 args
  SEQ=$((SEQ % 250 + 1))
  read -r -a args <<<"${S_ARGS[$i]//@SEQ@/$SEQ}"
  measure "$d" "${S_NAME[$i]}" "${S_EXPECT[$i]}" "$DUR" "" "${args[@]}"
}

# mon-1m, for one daemon: three count-bounded phases on one table, each source asking once
# per phase (-c N with -n N): 'empty' (10,000 sources the table holds easily: the reference),
# 'fill' (MON_N new sources: the table grows to MON_N records), 'evict' (MON_N more: past
# MON_DEPTH records every newcomer recycles the oldest). RSS and ntpgated's monitor counters
# go with each phase. A disturbed phase is not run again (each phase changes the table);
# the whole run_mon is repeated -R times on fresh daemons instead.
run_mon() { # daemon scenario-index
  local d=$1 i=$2 name=${S_NAME[$2]} ph base n rss0 rss1 extra
  for ph in empty fill evict; do
    case $ph in
      empty) base=127.100.0.1 n=10000 ;;
      fill) base=127.16.0.1 n=$MON_N ;;
      evict) base=127.64.0.1 n=$MON_N ;;
    esac
    wait_quiet
    rss0=$(vmrss_kb "${PID[$d]}")
    SEQ=$((SEQ % 250 + 1))
    measure "$d" "$name:$ph" open "$MON_MAXD" "mon_phase=$ph mon_sources=$n mon_depth=$MON_DEPTH rss0_kb=$rss0 " \
      -n "$n" -b "$base" -c "$MON_N" -w 64 -B 32
    rss1=$(vmrss_kb "${PID[$d]}")
    extra="rss1_kb=$rss1"
    # The results line gets the RSS after the phase appended (it is read after the stats).
    sed -i '$ s/$/ '"$extra"'/' "$RES"
    echo "            RSS ${rss0} -> ${rss1} kB$( [ "$d" = ntpgated ] && grep -o 'srv_mon_entries=[0-9]*\|dsrv_mon_evictions=[0-9]*\|dsrv_mon_not_tracked=[0-9]*' <<<"$(tail -1 "$RES")" | tr '\n' ' ' | sed 's/^/, /')"
  done
}

for i in "${!S_NAME[@]}"; do
  CUR_SCEN=${S_NAME[$i]}
  echo "run.sh: scenario ${S_NAME[$i]}: ${S_DESC[$i]}"
  order=()
  for d in ${DAEMONS//,/ }; do order+=("$d"); done
  for d in "${order[@]}"; do start_daemon "$d" "$i"; done
  for d in "${order[@]}"; do wait_ready "$d" "$i" || exit 1; done
  if [ "${S_EXPECT[$i]}" = mon ]; then
    # Each repeat on freshly started daemons (the phases fill their tables), daemons taking
    # turns going first; the table takes the medians as for the other scenarios.
    for ((r = 1; r <= REPS; r++)); do
      if ((r > 1)); then
        for d in "${order[@]}"; do start_daemon "$d" "$i"; done
        for d in "${order[@]}"; do wait_ready "$d" "$i" || exit 1; done
      fi
      if ((r % 2 == 0)); then mapfile -t run < <(printf '%s\n' "${order[@]}" | tac); else run=("${order[@]}"); fi
      for d in "${run[@]}"; do
        kill -0 "${PID[$d]}" 2>/dev/null || { echo "run.sh: $d died" >&2; exit 1; }
        run_mon "$d" "$i"
      done
      for d in "${order[@]}"; do stop_daemon "$d"; done
    done
    continue
  fi
  for ((r = 1; r <= REPS; r++)); do
    # Alternate which daemon goes first, so that drift in the machine spreads over both.
    if ((r % 2 == 0)); then mapfile -t run < <(printf '%s\n' "${order[@]}" | tac); else run=("${order[@]}"); fi
    for d in "${run[@]}"; do
      for ((attempt = 1; attempt <= 3; attempt++)); do
        kill -0 "${PID[$d]}" 2>/dev/null || { echo "run.sh: $d died" >&2; exit 1; }
        wait_quiet
        run_one "$d" "$i"
        if [ "$DISTURBED" = 0 ] || [ "$attempt" -ge 3 ]; then break; fi
        echo "  (running it again)"
      done
    done
  done
  for d in "${order[@]}"; do stop_daemon "$d"; done
done

# ---- tables ----
TABLE=$OUT/table-$STAMP.txt
{
  echo "ntpgate benchmark: $HEAD"
  echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
  echo "generator: ntpload on core 0; daemons on core 1 (ntpgated $ADDR_ntpgated, chronyd $ADDR_chronyd, port $PORT)"
  echo
  awk -f bench/common.awk -f bench/detail.awk "$RES"
  echo
  echo "Summary (ratio = ntpgated / chronyd; flood rows: CPU per request sent):"
  echo
  awk -f bench/common.awk -f bench/summary.awk "$RES"
} | tee "$TABLE"
ln -sf "$(basename "$TABLE")" "$OUT/table-latest.txt"
ln -sf "$(basename "$RES")" "$OUT/results-latest.tsv"
echo "run.sh: raw results in bench/out/$(basename "$RES"), table in bench/out/$(basename "$TABLE")"
