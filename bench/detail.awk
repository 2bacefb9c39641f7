# bench/detail.awk: every figure of every scenario, ntpgated beside chronyd (medians).
# usage: awk -f bench/common.awk -f bench/detail.awk bench/out/results-latest.tsv

function fmt(v, m) {
  if (v == "") return "-"
  if (m ~ /^p[0-9]/) return sprintf("%.1f", v)
  if (m ~ /us\/(answer|request|req)$/) return sprintf("%.2f", v)
  if (m ~ /%$/) return sprintf("%.1f", v)
  return sprintf("%.0f", v)
}
function take(f,   s, d, c) {
  s = f["scenario"]; d = f["daemon"]; c = cpu_us(f)
  put(s, d, "sent/s", f["sent_per_s"])
  put(s, d, "replies/s", f["rps"])
  put(s, d, "KoD/s", f["kod_per_s"])
  put(s, d, "lost", f["lost"])
  put(s, d, "server socket drops", f["sock_drops"])
  put(s, d, "p50 us", f["p50_us"])
  put(s, d, "p90 us", f["p90_us"])
  put(s, d, "p99 us", f["p99_us"])
  put(s, d, "p99.9 us", f["p999_us"])
  put(s, d, "CPU us/answer", f["valid"] ? c / f["valid"] : "")
  put(s, d, "CPU us/request", f["sent"] ? c / f["sent"] : "")
  put(s, d, "daemon CPU %", f["daemon_cpu_pct"])
  put(s, d, "generator CPU us/req", f["gen_cpu_us"])
  put(s, d, "others CPU %", f["others_pct"])
  put(s, d, "steal %", f["steal_pct"])
  put(s, d, "daemon threads", f["threads"])
  if ("rss0_kb" in f) { put(s, d, "RSS before kB", f["rss0_kb"]); put(s, d, "RSS after kB", f["rss1_kb"]) }
}
END {
  take_all()
  nm = split("sent/s,replies/s,KoD/s,lost,server socket drops,p50 us,p90 us,p99 us,p99.9 us,CPU us/answer,CPU us/request,daemon CPU %,generator CPU us/req,others CPU %,steal %,daemon threads,RSS before kB,RSS after kB", M, ",")
  printf "%-20s %-22s %12s %12s %8s\n", "scenario", "figure", "ntpgated", "chronyd", "ratio"
  for (i = 1; i <= NSC; i++) {
    s = SC[i]
    printf "%-20s %-22s %12s %12s %8s\n", s, "measurements used", runs(s, "ntpgated"), runs(s, "chronyd"), "-"
    for (j = 1; j <= nm; j++) {
      m = M[j]; a = get(s, "ntpgated", m); b = get(s, "chronyd", m)
      if (a == "" && b == "") continue
      r = (a != "" && b != "" && b + 0 != 0 && m !~ /lost|drops|KoD|others|steal|threads|sent/) ? sprintf("%.2f", a / b) : "-"
      printf "%-20s %-22s %12s %12s %8s\n", "", m, fmt(a, m), fmt(b, m), r
    }
  }
  print ""
  print "Figures are medians over the measurements used; N(k!) means k of them were disturbed by other work."
  print "ratio = ntpgated / chronyd: above 1 is better for replies/s, below 1 for latency, CPU and RSS."
  print "CPU us/answer = daemon utime+stime (/proc/PID/stat) over the run / valid replies; CPU us/request = the same / requests sent."
}
