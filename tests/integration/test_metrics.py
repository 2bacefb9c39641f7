"""The metrics endpoint (issue 17; docs/monitoring.md): a real Prometheus (Debian's
`prometheus`) on loopback scrapes two ntpgated every second -- a server with a local clock,
and a second ntpgated that is its client -- while ntpdig and hand-built requests are served
and a `limited` source earns RATE KoDs. Through Prometheus' HTTP API: the target is up,
replies and RATE KoDs arrived, the stratum is the one a client sees, the client's
association to the server has a reach and an offset, and no counter reset across a SIGHUP
reload. `promtool check metrics` finds the exposition clean; a `noquery` source and an
`ignore` source get the connection closed without a byte; a bad path gets 404, a malformed
request 400, an oversized head 431; a `metrics` line with an error is FILE:LINE at -t."""

import json
import os
import re
import shutil
import signal
import socket
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
STRATUM = 5
LEAPFILE = "/usr/share/zoneinfo/leap-seconds.list"  # tzdata


def leap_list_expiry():
    """The `#@` line of LEAPFILE as POSIX seconds (NTP seconds in the file), or None."""
    try:
        with open(LEAPFILE) as f:
            for line in f:
                if line.startswith("#@"):
                    return int(line.split()[1]) - ntpg.NTP_UNIX_EPOCH
    except (OSError, ValueError, IndexError):
        pass
    return None


def http_raw(addr, port, data, src=None, timeout=3.0):
    """Send data on a fresh TCP connection (from src), return everything read until close."""
    s = socket.socket(ntpg.family_of(addr), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if src:
            s.bind((src, 0))
        s.connect(ntpg.sockaddr(addr, port))
        s.sendall(data)
        out = b""
        for _ in range(1000):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out
    except OSError as e:
        return ("error: %s" % e).encode()
    finally:
        s.close()


def get_metrics(addr, port, src=None):
    raw = http_raw(addr, port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", src)
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.decode(errors="replace"), body.decode(errors="replace")


def sample(body, name):
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class Prometheus:
    def __init__(self, tmp, addr, port, targets):
        self.base = "http://%s:%d" % (addr, port)
        self.conf = os.path.join(tmp, "prometheus.yml")
        ntpg.write_text(self.conf, "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                        "scrape_configs:\n  - job_name: ntpgate\n    static_configs:\n"
                        "      - targets: [%s]\n" % ", ".join('"%s"' % t for t in targets))
        self.argv = ntpg.SETPRIV + [PROMETHEUS, "--config.file=" + self.conf,
                                    "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                                    "--web.listen-address=%s:%d" % (addr, port),
                                    "--log.level=warn"]
        self.out = os.path.join(tmp, "prometheus.out")
        self.err = os.path.join(tmp, "prometheus.err")
        self.proc = None

    def start(self):
        self.proc = ntpg.spawn(self.argv, self.out, self.err)
        return ntpg.wait_until(lambda: self.ready(), 30, 0.2)

    def ready(self):
        if self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.base + "/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, expr):
        """The instant vector's values as {labels-json: float}, or None on an error."""
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                doc = json.load(r)
        except (OSError, ValueError):
            return None
        if doc.get("status") != "success":
            return None
        return {json.dumps(v["metric"], sort_keys=True): float(v["value"][1])
                for v in doc["data"]["result"]}

    def value_where(self, expr, pred, timeout=30):
        """Wait (bounded) until expr has a value for which pred holds; return it or None."""
        def probe():
            res = self.query(expr) or {}
            good = [v for v in res.values() if pred(v)]
            return good[0] if good else None
        v = ntpg.wait_until(probe, timeout, 0.5)
        return v

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if ntpg.reap(self.proc, 10) is None:
                self.proc.kill()
                ntpg.reap(self.proc, 5)


def check_config_errors(c, tmp):
    path = os.path.join(tmp, "bad.conf")
    ntpg.write_text(path, "metrics listen 127.0.0.1\nmetrics listen nowhere\n"
                    "metrics listen 127.0.0.1 port 0\nmetrics talk 127.0.0.1\n"
                    "metrics listen 10.0.0.0/8\n")
    rc, out, err = ntpg.run_tool([ntpg.DAEMON, "-t", "-c", path], 10)
    want = ["%s:%d:" % (path, n) for n in (2, 3, 4, 5)]
    missing = [w for w in want if w not in err]
    c.check("-t: every bad metrics line is FILE:LINE, exit 2", rc == 2 and not missing
            and "%s:1:" % path not in err, "rc %s" % rc, why="missing %s in %r" % (missing, err))


def check_endpoint(c, addr, port, src_noquery, src_ignore):
    head, body = get_metrics(addr, port)
    c.check("GET /metrics: 200, text format 0.0.4", head.startswith("HTTP/1.1 200") and
            "version=0.0.4" in head, head.splitlines()[0] if head else "", why=head[:200])
    rc = None
    if os.access(PROMTOOL, os.X_OK):
        p = ntpg.subprocess.run([PROMTOOL, "check", "metrics"], input=body.encode(),
                                capture_output=True, timeout=30)
        rc, msg = p.returncode, (p.stdout + p.stderr).decode(errors="replace")
        c.check("promtool check metrics: clean", rc == 0 and not msg.strip(),
                "%d lines" % len(body.splitlines()), why="rc %s: %s" % (rc, msg[:600]))
    else:
        c.check("promtool installed (scripts/deps.sh)", False)
    for label, src in (("noquery", src_noquery), ("ignore", src_ignore)):
        got = http_raw(addr, port, b"GET /metrics HTTP/1.1\r\n\r\n", src)
        # closed without a byte: end of file, or a reset (our request was left unread)
        c.check("a %s source gets no byte" % label, got == b"" or b"Errno 104" in got,
                repr(got[:60]), why=repr(got[:100]))
    for req, code in ((b"GET /other HTTP/1.1\r\n\r\n", b"404"),
                      (b"GET /metrics HTTP/1.1\r\nbad header\r\n\r\n", b"400"),
                      (b"POST /metrics HTTP/1.1\r\n\r\n", b"405"),
                      (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n", b"431")):
        got = http_raw(addr, port, req)
        c.check("%r...: %s" % (req[:24], code.decode()),
                got.startswith(b"HTTP/1.1 " + code), why=repr(got[:80]))
    return body


def check_dashboard(c, prom):
    """Every query of contrib/grafana/ntpgate.json runs in Prometheus, and every metric it
    names is scraped."""
    path = os.path.join(ntpg.SRC, "contrib", "grafana", "ntpgate.json")
    with open(path) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    bad = [e for e in exprs if prom.query(e.replace("$__rate_interval", "1m")
                                          .replace("$instance", ".*")) is None]
    c.check("dashboard: every query of %d runs" % len(exprs), exprs and not bad, why=str(bad))
    names = sorted({w for e in exprs for w in re.findall(r"ntpgate_[a-z_]+", e)})
    missing = [n for n in names if not prom.query("count(%s)" % n)]
    c.check("dashboard: the %d metrics it uses are scraped" % len(names), not missing,
            why=str(missing))


def main(c, tmp):
    if not os.access(PROMETHEUS, os.X_OK):
        c.check("prometheus installed (scripts/deps.sh test)", False)
        return
    check_config_errors(c, tmp)
    server, client = ntpg.server_addr(1), ntpg.server_addr(2)
    limited, noquery, ignore = ntpg.source_addr(2), ntpg.source_addr(3), ntpg.source_addr(4)
    mport, cport, pport = ntpg.v6_port(0), ntpg.v6_port(1), ntpg.v6_port(2)
    d = ntpg.Daemon(tmp, [server], stratum=STRATUM, name="server", extra=[
        "restrict %s kod limited" % limited, "restrict %s noquery" % noquery,
        "restrict %s ignore" % ignore, "metrics listen %s port %d" % (server, mport)] +
        (["leapfile %s" % LEAPFILE] if leap_list_expiry() else []))
    cl = ntpg.Daemon(tmp, [client], stratum=None, name="client", extra=[
        "server %s iburst minpoll 3 maxpoll 3" % server,
        "metrics listen %s port %d" % (client, cport)])
    c.check("server answers", d.start(), why=d.stderr_text()[-300:])
    c.check("client starts", cl.start(wait=False) and ntpg.wait_until(
        lambda: "running" in d.log_text() and "running" in cl.log_text(), 15))
    prom = Prometheus(tmp, server, pport, ["%s:%d" % (server, mport), "%s:%d" % (client, cport)])
    c.check("prometheus ready on %s:%d" % (server, pport), prom.start(),
            why=ntpg.read_text(prom.err)[-500:])

    body = check_endpoint(c, server, mport, noquery, ignore)
    c.check("stratum %d in the exposition" % STRATUM,
            sample(body, "ntpgate_system_stratum") == STRATUM, why=str(
                sample(body, "ntpgate_system_stratum")))

    want = leap_list_expiry()
    got = sample(body, "ntpgate_leap_list_expiry_timestamp_seconds")
    if want:
        c.check("leap-second list expiry as in %s" % LEAPFILE, got == want, "%s" % got,
                why="want %s" % want)
    else:
        c.skip("leap-second list expiry", "no %s with a #@ line here" % LEAPFILE)

    dig = ntpg.run_ntpdig(server)
    c.check("ntpdig served", "error" not in dig, "stratum %s" % dig.get("stratum"),
            why=dig.get("error", ""))
    b = ntpg.burst(server, 123, limited, [ntpg.client_request() for _ in range(4)],
                   ntpg.source_addr(1))
    kods = sum(1 for r in (b["replies"] if b else []) if r and ntpg.is_kod(r[0], "RATE"))
    c.check("the limited source got a RATE KoD", kods >= 1, "%d RATE KoDs" % kods)
    # a snapshot younger than MTR_FRESH_MS (250 ms) is served as it is; an older one is
    # taken anew for the scrape, without waiting for any tick
    time.sleep(0.3)
    now = sample(get_metrics(server, mport)[1], 'ntpgate_kod_sent_total{code="RATE"}')
    c.check("a scrape 300 ms later sees it (snapshots are taken on demand)", now == kods,
            "%s" % now)

    up = prom.value_where('up{job="ntpgate"}', lambda v: v == 1)
    c.check("prometheus: both targets up", up == 1 and prom.value_where(
        'count(up{job="ntpgate"} == 1)', lambda v: v == 2) == 2)
    v = prom.value_where('ntpgate_kod_sent_total{code="RATE",instance="%s:%d"}' % (server, mport),
                         lambda v: v >= kods and kods > 0)
    c.check("prometheus: RATE KoDs arrived", v is not None, "%s" % v)
    v = prom.value_where('ntpgate_responses_sent_total{instance="%s:%d"}' % (server, mport),
                         lambda v: v >= 3)
    c.check("prometheus: replies arrived", v is not None, "%s" % v)
    v = prom.value_where('ntpgate_system_stratum{instance="%s:%d"}' % (server, mport),
                         lambda v: v == dig.get("stratum", STRATUM))
    c.check("prometheus: stratum is what ntpdig saw", v is not None, "%s" % v)
    for code in ("RATE", "DENY", "RSTR", "CRYP", "NTSN"):
        got = prom.query('ntpgate_kod_sent_total{code="%s"}' % code)
        c.check("prometheus: KoD series code=%s exists" % code, bool(got))
    v = prom.value_where('ntpgate_peer_reach{peer="%s",instance="%s:%d"}' % (server, client,
                                                                            cport),
                         lambda v: v > 0)
    c.check("prometheus: the client's association to the server is reached", v is not None,
            "reach %s" % v)
    v = prom.value_where('ntpgate_peer_delay_seconds{peer="%s"}' % server,
                         lambda v: 0 < v < 0.1)
    c.check("prometheus: the association's delay is measured", v is not None, "%s s" % v)

    check_dashboard(c, prom)

    before = sample(get_metrics(server, mport)[1], "ntpgate_responses_sent_total") or 0
    # a reload that moves the endpoint: taken, but the endpoint stays until a restart
    d.write_config(extra=[x.replace("port %d" % mport, "port %d" % ntpg.v6_port(3))
                          for x in d.extra])
    d.send_signal(signal.SIGHUP)
    c.check("reload taken", ntpg.wait_until(lambda: "configuration reloaded" in d.log_text(),
                                            10))
    c.check("a changed metrics line is said to need a restart",
            "take effect at the next restart" in d.log_text())
    c.check("the endpoint stays where it was",
            get_metrics(server, mport)[0].startswith("HTTP/1.1 200"))
    # a reload with a bad metrics line changes nothing and says where
    d.write_config(extra=d.extra + ["metrics listen nowhere"])
    d.send_signal(signal.SIGHUP)
    c.check("a bad metrics line: the reload is refused with FILE:LINE",
            ntpg.wait_until(lambda: "reload failed" in d.log_text(), 10) and
            "%s:" % d.conf in d.log_text() and "bad address 'nowhere'" in d.log_text())
    ntpg.run_ntpdig(server)
    after = prom.value_where('ntpgate_responses_sent_total{instance="%s:%d"}' % (server, mport),
                             lambda v: v > before)
    resets = prom.query('resets(ntpgate_responses_sent_total[5m])') or {}
    c.check("counters monotonic across a reload", after is not None and resets and
            all(r == 0 for r in resets.values()), "before %s after %s" % (before, after))
    prom.stop()
    for dm in (cl, d):
        dm.stop()
        c.check("%s: no sanitizer report" % dm.name, not dm.sanitizer_report())
    shutil.rmtree(os.path.join(tmp, "tsdb"), ignore_errors=True)


if __name__ == "__main__":
    ntpg.run(main, __doc__.splitlines()[0])
