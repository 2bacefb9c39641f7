# bench/common.awk: helpers shared by bench/detail.awk and bench/summary.awk, which read a
# results file of bench/run.sh (one measurement per line, space-separated key=value pairs).
#
# Which measurements count: for each (scenario, daemon), the undisturbed ones, or all of them
# if every one was disturbed (see docs/benchmark.md, "Other work on the machine").

function parse(l, f,   i, p, nf, w) {
  split("", f)
  nf = split(l, w, " ")
  for (i = 1; i <= nf; i++) { p = index(w[i], "="); if (p > 1) f[substr(w[i], 1, p - 1)] = substr(w[i], p + 1) }
}

# Median of the values stored with put(); "" if none.
function med(key,   n, i, j, v, a) {
  n = cnt[key]; if (n == 0) return ""
  for (i = 1; i <= n; i++) a[i] = val[key, i] + 0
  for (i = 2; i <= n; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
  return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function put(s, d, m, v,   k) { if (v == "") return; k = s SUBSEP d SUBSEP m; cnt[k]++; val[k, cnt[k]] = v }
function get(s, d, m) { return med(s SUBSEP d SUBSEP m) }

# Read every line; call take(line) for the measurements that count. Scenarios are listed in
# NSC/SC[] in the order they first appear.
{
  parse($0, F)
  k = F["scenario"] SUBSEP F["daemon"]
  if (!(F["scenario"] in seen)) { seen[F["scenario"]] = 1; SC[++NSC] = F["scenario"] }
  nrun[k]++; if (F["disturbed"] == 1) ndist[k]++
  line[NR] = $0; key[NR] = k; dist[NR] = (F["disturbed"] == 1)
}
function take_all(   n) {
  for (n = 1; n <= NR; n++)
    if (!dist[n] || ndist[key[n]] == nrun[key[n]]) {
      parse(line[n], F)
      used[F["scenario"], F["daemon"]]++
      if (F["disturbed"] == 1) useddist[F["scenario"], F["daemon"]]++
      take(F)
    }
}
function runs(s, d) {
  if (!used[s, d]) return "-"
  return used[s, d] (useddist[s, d] ? "(" useddist[s, d] "!)" : "")
}
# CPU time of the daemon over the measurement, in microseconds.
function cpu_us(f) { return f["clk_tck"] ? f["cpu_ticks"] / f["clk_tck"] * 1e6 : "" }
