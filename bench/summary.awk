# bench/summary.awk: the summary table of a bench/run.sh results file, one row per scenario
# (mon-1m: one per phase), as a Markdown table.
# usage: awk -f bench/common.awk -f bench/summary.awk bench/out/results-latest.tsv
#
# CPU µs/answer = daemon utime+stime over the measurement / valid answers; for flood
# scenarios, where most requests get no answer by design, µs per request sent instead.

function take(f,   s, d, c, k, n, i, keys) {
  s = f["scenario"]; d = f["daemon"]; c = cpu_us(f)
  put(s, d, "rps", f["rps"])
  put(s, d, "cpu_ans", f["valid"] ? c / f["valid"] : "")
  put(s, d, "cpu_req", f["sent"] ? c / f["sent"] : "")
  n = split("valid kod sent sent_per_s p99_us daemon_cpu_pct rss0_kb rss1_kb mon_sources mon_depth gen_cpu_us", keys, " ")
  for (i = 1; i <= n; i++) if (keys[i] in f) put(s, d, keys[i], f[keys[i]])
  for (k in f) if (k ~ /^d?srv_/) put(s, d, k, f[k])
}
# mon-1m: pair each repeat's evict phase with the empty phase of the same daemon process (a
# repeat starts at each ':empty' line of a daemon), so the ratio never mixes two processes.
{
  parse($0, G)
  if (G["scenario"] ~ /^mon.*:empty$/) mrep[G["daemon"]]++
  if (G["scenario"] ~ /^mon.*:(empty|evict)$/ && G["valid"] > 0) {
    ph = G["scenario"] ~ /:empty$/ ? "empty" : "evict"
    mcpu[G["daemon"], mrep[G["daemon"]], ph] = cpu_us(G) / G["valid"]
    mdist[G["daemon"], mrep[G["daemon"]]] += G["disturbed"]
  }
}
# "a, b (!), c": evict/empty per repeat, "!" where either phase was disturbed.
function mon_pairs(d,   r, out, e, x) {
  out = ""
  for (r = 1; r <= mrep[d]; r++) {
    e = mcpu[d, r, "empty"]; x = mcpu[d, r, "evict"]
    if (e == "" || x == "") continue
    out = out (out == "" ? "" : ", ") sprintf("%.2f", x / e) (mdist[d, r] ? "!" : "")
  }
  return out == "" ? "-" : out
}
function num(v, p) { return v == "" ? "-" : sprintf("%." p "f", v) }
function z(v) { return v == "" ? 0 : v }
function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
function mib(kb) { return kb == "" ? "?" : sprintf("%.1f", kb / 1024) }
function base(s) { sub(/:.*/, "", s); return s }

function notes(s,   g, c, o, e, r, ne, fill) {
  g = "ntpgated"; c = "chronyd"
  if (s ~ /^open/)
    return sprintf("p99 %s / %s us; daemon CPU %s / %s %%", num(get(s, g, "p99_us"), 0), num(get(s, c, "p99_us"), 0),
                   num(get(s, g, "daemon_cpu_pct"), 0), num(get(s, c, "daemon_cpu_pct"), 0))
  if (s ~ /^restrict/) {
    o = "open-10k-sat"
    r = sprintf("vs own open-10k-sat: ntpgated CPU x%s, replies/s x%s; chronyd CPU x%s, replies/s x%s",
                ratio(get(s, g, "cpu_ans"), get(o, g, "cpu_ans")), ratio(get(s, g, "rps"), get(o, g, "rps")),
                ratio(get(s, c, "cpu_ans"), get(o, c, "cpu_ans")), ratio(get(s, c, "rps"), get(o, c, "rps")))
    return r sprintf("; KoD %s / %s", num(get(s, g, "kod"), 0), num(get(s, c, "kod"), 0))
  }
  if (s ~ /^flood/)
    return sprintf("CPU per request; offered %s/s; ntpgated answered %s + %s KoD of %s (served %s, leak %s of which shed samples %s, RATE KoD %s, dropped %s, dropped in the kernel %s, KoD refused by kodlimit %s); chronyd %s + %s KoD of %s; generator CPU us/request %s / %s",
                   num(get(s, g, "sent_per_s"), 0), num(get(s, g, "valid"), 0), num(get(s, g, "kod"), 0), num(get(s, g, "sent"), 0),
                   num(z(get(s, g, "dsrv_served")), 0), num(z(get(s, g, "dsrv_served_leak")), 0), num(z(get(s, g, "dsrv_shed_samples")), 0),
                   num(z(get(s, g, "dsrv_kod_rate")), 0),
                   num(z(get(s, g, "dsrv_dropped_limited")), 0), num(z(get(s, g, "dsrv_kernel_drops")), 0), num(z(get(s, g, "dsrv_dropped_kod_limit")), 0),
                   num(get(s, c, "valid"), 0), num(get(s, c, "kod"), 0), num(get(s, c, "sent"), 0),
                   num(get(s, g, "gen_cpu_us"), 2), num(get(s, c, "gen_cpu_us"), 2))
  if (s ~ /^mon.*:/) {
    r = sprintf("%s sources; RSS MiB ntpgated %s->%s, chronyd %s->%s; ntpgated records %s of %s",
                num(get(s, g, "mon_sources") == "" ? get(s, c, "mon_sources") : get(s, g, "mon_sources"), 0),
                mib(get(s, g, "rss0_kb")), mib(get(s, g, "rss1_kb")), mib(get(s, c, "rss0_kb")), mib(get(s, c, "rss1_kb")),
                num(get(s, g, "srv_mon_entries"), 0), num(get(s, g, "srv_mon_capacity"), 0))
    if (get(s, g, "dsrv_mon_evictions") != "" || get(s, g, "dsrv_mon_not_tracked") != "")
      r = r sprintf(", evicted %s, not tracked %s", num(z(get(s, g, "dsrv_mon_evictions")), 0), num(z(get(s, g, "dsrv_mon_not_tracked")), 0))
    if (s ~ /:fill$/) {
      ne = get(s, g, "mon_sources")
      r = r sprintf("; table %s MiB = %s B/record (mon_memory_bytes/capacity); RSS growth per new client: ntpgated %s B, chronyd %s B",
                    num(get(s, g, "srv_mon_memory_bytes") / 1048576, 1),
                    get(s, g, "srv_mon_capacity") ? num(get(s, g, "srv_mon_memory_bytes") / get(s, g, "srv_mon_capacity"), 1) : "-",
                    ne ? num((get(s, g, "rss1_kb") - get(s, g, "rss0_kb")) * 1024 / ne, 1) : "-",
                    get(s, c, "mon_sources") ? num((get(s, c, "rss1_kb") - get(s, c, "rss0_kb")) * 1024 / get(s, c, "mon_sources"), 1) : "-")
    }
    if (s ~ /:evict$/) {
      e = base(s) ":empty"
      r = r sprintf("; CPU/answer evict/empty of the medians: ntpgated x%s, chronyd x%s; per repeat (same process, ! = disturbed): ntpgated %s, chronyd %s (issue 7 asks <= 1.2 for ntpgated)",
                    ratio(get(s, g, "cpu_ans"), get(e, g, "cpu_ans")), ratio(get(s, c, "cpu_ans"), get(e, c, "cpu_ans")),
                    mon_pairs(g), mon_pairs(c))
    }
    return r
  }
  return ""
}

END {
  take_all()
  print "| scenario | ntpgated replies/s | chronyd replies/s | ratio | ntpgated CPU µs/answer | chronyd CPU µs/answer | ratio | notes |"
  print "|---|---:|---:|---:|---:|---:|---:|---|"
  for (i = 1; i <= NSC; i++) {
    s = SC[i]
    m = s ~ /^flood/ ? "cpu_req" : "cpu_ans"
    a = get(s, "ntpgated", "rps"); b = get(s, "chronyd", "rps")
    x = get(s, "ntpgated", m); y = get(s, "chronyd", m)
    printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", s, num(a, 0), num(b, 0), ratio(a, b),
           num(x, 2), num(y, 2), ratio(x, y), notes(s)
  }
}
