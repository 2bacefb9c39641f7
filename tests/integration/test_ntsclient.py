"""ntpgated as an NTS client (RFC 8915; `server HOST nts`, docs/nts.md), with a CA and server
certificates made here by the openssl CLI: `-t` checks the `ca` FILE of an NTS source and the
option rules (FILE:LINE); a client trusting another CA gets nothing (its handshakes fail
verification, it sends no NTP at all: the server counts no datagram), nor does one whose
NTS-KE port is closed or never answers TLS (connect and timeout failures); ntpgated syncs to
chronyd 4.3 running as an NTS server (`server`) and to ntpgated's NTS server (`pool`; ntpq: the association is
the system peer, reachable and authenticated; the client_nts_* counters, read with ntpq `rv 0
NAME`, show the handshake, the cookies and the authenticated replies, and nothing dropped);
a client chrooted with -i syncs with its CA outside the jail; after the server restarts with
new cookie keys, its NTSN KoD makes the client re-run NTS-KE and go on with authenticated
time."""

import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402
from test_nts import make_pki  # noqa: E402
from test_privilege import exited_cleanly  # noqa: E402

PROBE = ntpg.source_addr(31)
POLL = "iburst minpoll 1 maxpoll 1"
COUNTERS = ["client_nts_ke_ok", "client_nts_ke_fail_connect", "client_nts_ke_fail_tls",
            "client_nts_ke_fail_verify", "client_nts_ke_fail_protocol",
            "client_nts_ke_fail_timeout", "client_nts_cookies", "client_nts_auth",
            "client_nts_ntsn", "client_nts_dropped_unauth", "client_nts_kod_ignored",
            "client_nts_no_cookie", "client_nts_pool_retired"]


def A(k):
    return ntpg.server_addr(k)


def nts_vars(d):
    """The client_nts_* counters through ntpq (`rv 0 NAMES`), as ints."""
    rc, out, err = ntpg.run_ntpq(d.listen[0], ["rv 0 " + ",".join(COUNTERS)])
    v = ntpg.parse_vars(out)
    return {k: int(v[k]) for k in COUNTERS if k in v and v[k].isdigit()}


def synced_to(d, upstream):
    """The ntpq -p line of upstream when it is the system peer (`*`), else None."""
    rc, out, err = ntpg.run_ntpq(d.listen[0], ["peers"])
    line = [ln for ln in out.splitlines() if upstream in ln]
    return line[0].strip() if line and line[0].lstrip().startswith("*") else None


def client(tmp, name, k, upstream, kport, ca, kind="server", more=()):
    d = ntpg.Daemon(tmp, [A(k)], stratum=None, name=name, probe_src=PROBE,
                    extra=["%s %s nts ca %s port %d %s" % (kind, upstream, ca, kport, POLL)]
                    + list(more))
    d.ke_port = kport
    return d


def check_metrics(c, d):
    """The client_nts_* counters on the metrics endpoint (default port, our address) equal
    ntpq's, as ntpgate_client_nts_events_total{event=...}."""
    from test_metrics import get_metrics, sample
    v = nts_vars(d)
    head, body = get_metrics(d.listen[0], 9975)
    got = {k: sample(body, 'ntpgate_client_nts_events_total{event="%s"}' % k[11:])
           for k in COUNTERS}
    # the reply counters may move between the two reads: compare what cannot, in a sync
    c.check("metrics: ntpgate_client_nts_events_total has the %d client_nts_* counters"
            % len(COUNTERS), all(got[k] is not None for k in COUNTERS) and
            got["client_nts_ke_ok"] == v.get("client_nts_ke_ok") == 1 and
            got["client_nts_auth"] >= 4, str(got), why="%s vs ntpq %s" % (got, v))


def check_config(c, tmp, p, kport):
    cases = [
        ("server %s nts ca %s port %d\n" % (A(1), p("missing.pem"), kport), 1,
         "cannot read the CA"),
        ("# comment\nserver %s nts ca %s\n" % (A(1), p("ext")), 2, "cannot load the CA file"),
        ("server %s ca %s\n" % (A(1), p("ca.pem")), 1, "add 'nts'"),
        ("server %s noval\n" % A(1), 1, "add 'nts'"),
        ("server %s nts key 1\n" % A(1), 1, "exclude each other"),
        ("peer %s nts\n" % A(1), 1, "server' and 'pool' lines"),
        ("server %s nts version 3\n" % A(1), 1, "version 4"),
    ]
    for i, (text, line, want) in enumerate(cases):
        f = ntpg.write_text(os.path.join(tmp, "t%d.conf" % i), text)
        rc, out, err = ntpg.run_tool([ntpg.DAEMON, "-t", "-c", f], 30)
        c.check("-t refuses %r as FILE:%d: ... %s" % (text.strip().split("\n")[-1], line, want),
                rc != 0 and ("%s:%d: " % (f, line)) in out + err and want in out + err,
                out + err)
    f = ntpg.write_text(os.path.join(tmp, "tok.conf"), "server %s nts ca %s port %d iburst\n"
                        "pool %s nts\n" % (A(1), p("ca.pem"), kport, "pool.ntske.test"))
    rc, out, err = ntpg.run_tool([ntpg.DAEMON, "-t", "-c", f], 30)
    c.check("-t accepts `server ADDR nts ca FILE port N` and `pool HOST nts`", rc == 0, out + err)


def check_wrong_ca(c, tmp, p, s1, kport):
    c.section("a client trusting another CA")
    before = s1.stats() or {}
    w = client(tmp, "wrongca", 5, A(1), kport, p("other.pem"))
    c.check("the client starts", w.start())
    got = ntpg.wait_until(lambda: (lambda v: v if v.get("client_nts_ke_fail_verify", 0) >= 1
                                   else None)(nts_vars(w)), 15) or nts_vars(w)
    time.sleep(3)  # a few polls' worth of time: nothing may be sent meanwhile
    got = nts_vars(w)
    cs = w.stats() or {}
    after = s1.stats() or {}
    c.check("its handshakes fail verification, none succeeds, no cookie",
            got.get("client_nts_ke_fail_verify", 0) >= 1 and got.get("client_nts_ke_ok") == 0
            and got.get("client_nts_cookies") == 0, str(got))
    c.check("it sends no NTP at all (client_requests 0; the server received no datagram)",
            cs.get("client_requests") == 0 and
            after.get("received", 0) - before.get("received", 0) == 0,
            "client_requests %s, server received +%d" % (
                cs.get("client_requests"), after.get("received", 0) - before.get("received", 0)))
    c.check("the server saw the TLS failure (nts_ke_tls_failed)",
            after.get("nts_ke_tls_failed", 0) > before.get("nts_ke_tls_failed", 0),
            str({k: v for k, v in after.items() if k.startswith("nts_ke")}))
    c.check("the log says why: certificate verify failed",
            "NTS-KE with %s" % A(1) in w.log_text() and "certificate" in w.log_text())
    check_awaiting_ke(c, w, A(1))
    w.stop()


def check_awaiting_ke(c, d, host):
    """An NTS source that has no keys yet is listed by ntpq -p: refid .NTS., stratum 16,
    reach 0, never selected; its variables say srcport = the NTS-KE port."""
    rc, out, err = ntpg.run_ntpq(d.listen[0], ["peers", "associations"])
    rows = [ln.split() for ln in out.splitlines() if host in ln]
    c.check("ntpq -p lists the source waiting for NTS-KE: %s .NTS. st 16, reach 0, not "
            "selected" % host, len(rows) == 1 and rows[0][0] == host and rows[0][1] == ".NTS."
            and rows[0][2] == "16" and rows[0][6] == "0", out)
    ids = re.findall(r"^\s*\d+\s+(\d+)\s+[0-9a-f]{4}\s+yes\s+", out, re.M)
    rc, rv, err = ntpg.run_ntpq(d.listen[0], ["rv %s srcadr,srcport,stratum,refid,reach" % (
        ids[0] if ids else 0)])
    c.check("ntpq rv of that association: the NTS-KE address and port, stratum 16, reach 0",
            len(ids) == 1 and "srcadr=%s" % host in rv and "srcport=%d" % d.ke_port in rv
            and "stratum=16" in rv and "reach=00" in rv, rv)


def check_synced(c, d, upstream, label, status="f"):
    line = ntpg.wait_until(lambda: synced_to(d, upstream), 30)
    c.check("%s: ntpq -p shows `*%s` (system peer)" % (label, upstream), line is not None,
            str(line), why=ntpg.run_ntpq(d.listen[0], ["peers"])[1][-400:])
    rc, out, err = ntpg.run_ntpq(d.listen[0], ["associations"])
    row = [ln for ln in out.splitlines() if re.match(r"\s*\d+\s+\d+\s+[0-9a-f]{4}", ln)]
    c.check("%s: ntpq associations: reachable, authenticated (auth ok, status 0x%s...)"
            % (label, status), len(row) == 1 and " ok " in row[0] and "yes" in row[0] and
            row[0].split()[2].startswith(status), out)
    v = nts_vars(d)
    c.check("%s: client_nts_*: 1 handshake, 8+ cookies, authenticated replies, no drops" % label,
            v.get("client_nts_ke_ok") == 1 and v.get("client_nts_cookies", 0) >= 8 and
            v.get("client_nts_auth", 0) >= 4 and v.get("client_nts_dropped_unauth") == 0 and
            v.get("client_nts_no_cookie") == 0 and
            not any(v.get(k) for k in COUNTERS if "fail" in k), str(v))
    return v


def check_chroot(c, tmp, p, kport):
    """With -i JAIL the NTS source's `ca` is outside the jail: the TLS context is made before
    the chroot. The CA is given as a directory whose file is not named by hash (`ca.pem`), so
    only its certificates read at start can verify the server."""
    c.section("-i DIR: the CA outside the chroot")
    jail, cadir = os.path.join(tmp, "jail"), os.path.join(tmp, "cadir")
    os.mkdir(jail)
    os.mkdir(cadir)
    with open(p("ca.pem"), "rb") as f, open(os.path.join(cadir, "ca.pem"), "wb") as g:
        g.write(f.read())
    d = client(tmp, "jailed", 10, A(1), kport, cadir)
    if not c.check("an NTS client with -i DIR starts", d.start(more=["-i", jail]),
                   d.all_output()[-400:]):
        return
    check_synced(c, d, A(1), "chrooted, CA directory outside the jail")
    rc, took = d.stop()
    c.check("the chrooted client exits cleanly", exited_cleanly(rc, True, d.all_output()),
            str(rc))


def check_ntsn(c, tmp, p, s1, cl, kport):
    c.section("NTSN: the server restarts with new cookie keys")
    s1.stop()
    os.unlink(p("cookies"))
    c.check("the server restarts", s1.start())
    before = nts_vars(cl)
    v = ntpg.wait_until(lambda: (lambda x: x if x.get("client_nts_ke_ok", 0) >= 2 and
                                 x.get("client_nts_auth", 0) > before.get("client_nts_auth", 0)
                                 + 2 else None)(nts_vars(cl)), 30) or nts_vars(cl)
    c.check("the client got an NTSN, ran NTS-KE again and has authenticated replies since",
            v.get("client_nts_ntsn", 0) >= 1 and v.get("client_nts_ke_ok", 0) >= 2 and
            v.get("client_nts_auth", 0) > before.get("client_nts_auth", 0) + 2,
            "before %s after %s" % (before, v))
    c.check("log: the NTS NAK", "NTS NAK (NTSN)" in cl.log_text())
    check_ke_time(c, cl)
    s = s1.stats() or {}
    c.check("the restarted server sent the NTSN (kod_ntsn_cookie) and served NTS again",
            s.get("kod_ntsn_cookie", 0) >= 1 and s.get("served_nts", 0) >= 1,
            str({k: v for k, v in s.items() if "nts" in k}))


def check_ke_time(c, d):
    """The log gives each handshake's duration. Against ntpgated's server on loopback one
    takes a few ms; with Nagle's algorithm on the client's socket the request written after
    its TLS Finished waited for the server's delayed ACK, so every handshake took 40 ms or
    more (47.7 ms measured before TCP_NODELAY, 3.5 ms after). The fastest of them is what is
    checked, and not under a sanitizer, which makes the TLS work itself slow."""
    ms = [float(x) for x in re.findall(r"NTS-KE with \S+ \(\S+\) in ([0-9.]+) ms: ",
                                       d.log_text())]
    c.check("log: each NTS-KE handshake with its duration (%d of them)" % len(ms),
            len(ms) >= 2, d.log_text()[-600:])
    if not ntpg.SANITIZE:
        c.check("the fastest handshake took less than a delayed ACK (40 ms): no Nagle stall",
                ms and min(ms) < 40, "ms: %s" % ms)


def tcp_forward(listen, to):
    """A TCP forwarder on listen (address, port) to `to`, on threads of its own; returns the
    listening socket (close it to stop). Our NTS-KE server listens on every address, so a
    port of its own on one address is made here: the others refuse the connection."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(listen)
    ls.listen(8)

    def pump(a, b):
        try:
            while True:
                data = a.recv(4096)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def serve():
        while True:
            try:
                a, _ = ls.accept()
            except OSError:
                return  # closed
            b = socket.create_connection(to, timeout=5)
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=pump, args=(x, y), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return ls


def check_pool_retires(c, tmp, p, kport, kp_pool):
    """`pool ntske.test nts` where the name gives a dead address first, then the server: the
    member whose NTS-KE fails CLI_NTS_RETIRE (2) times in a row is retired and its address
    struck, and the next member (the live server) is taken and synchronized to."""
    c.section("an NTS pool member whose NTS-KE keeps failing is replaced")
    dead, live = A(9), A(1)
    fwd = tcp_forward((live, kp_pool), (live, kport))
    hosts = ntpg.write_text(os.path.join(tmp, "hosts"), "%s ntske.test\n%s ntske.test\n" % (
        dead, live))
    order, out = ntpg.resolve_in_hosts(hosts, "ntske.test")
    c.check("in the namespace ntske.test gives the dead address first, then the server",
            order == [dead, live], out)
    d = ntpg.HostsDaemon(hosts, tmp, [A(8)], stratum=None, name="c3", probe_src=PROBE, extra=[
        "pool ntske.test nts ca %s port %d %s" % (p("ca.pem"), kp_pool, POLL),
        "tos minclock 1 maxclock 1"])
    c.check("the pool client starts", d.start())
    line = ntpg.wait_until(lambda: synced_to(d, live), 60)
    v = nts_vars(d)
    c.check("it synchronized to the server (system peer %s)" % live, line is not None,
            ntpg.run_ntpq(d.listen[0], ["peers"])[1][-400:])
    c.check("after 2 failed handshakes with the dead member, one retired (client_nts_pool_"
            "retired 1, client_nts_ke_fail_connect 2), then keys from the server",
            v.get("client_nts_pool_retired") == 1 and v.get("client_nts_ke_fail_connect") == 2
            and v.get("client_nts_ke_ok", 0) >= 1, str(v))
    c.check("log: pool member %s:%d retired after 2 failed NTS-KE handshakes" % (dead, kp_pool),
            "pool member %s:%d retired after 2 failed NTS-KE handshakes" % (dead, kp_pool)
            in d.log_text(), d.log_text()[-600:])
    rc, took = d.stop()
    c.check("c3 exits cleanly", rc == 0, str(rc))
    fwd.close()


def start_unreachable(tmp, p, kp_refused, kp_silent):
    """Two clients whose NTS-KE cannot succeed: nothing listens on one port; on the other a
    socket that accepts TCP (the kernel's backlog) and never answers TLS."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind((A(1), kp_silent))
    silent.listen(8)
    refused = client(tmp, "refused", 6, A(1), kp_refused, p("ca.pem"))
    stalled = client(tmp, "stalled", 7, A(1), kp_silent, p("ca.pem"))
    return silent, refused, stalled


def check_unreachable(c, silent, refused, stalled):
    c.section("NTS-KE refused and NTS-KE that never answers")
    v = nts_vars(refused)
    cs = refused.stats() or {}
    c.check("nothing listening: client_nts_ke_fail_connect, no handshake, no NTP sent",
            v.get("client_nts_ke_fail_connect", 0) >= 1 and v.get("client_nts_ke_ok") == 0 and
            cs.get("client_requests") == 0, "%s requests %s" % (v, cs.get("client_requests")))
    c.check("log: connect: Connection refused", "Connection refused" in refused.log_text())
    check_awaiting_ke(c, refused, A(1))
    v = ntpg.wait_until(lambda: (lambda x: x if x.get("client_nts_ke_fail_timeout", 0) >= 1
                                 else None)(nts_vars(stalled)), 15) or nts_vars(stalled)
    cs = stalled.stats() or {}
    c.check("TLS never answered: client_nts_ke_fail_timeout after 10 s, no NTP sent",
            v.get("client_nts_ke_fail_timeout", 0) >= 1 and v.get("client_nts_ke_ok") == 0 and
            cs.get("client_requests") == 0, "%s requests %s" % (v, cs.get("client_requests")))
    for d in (refused, stalled):
        rc, took = d.stop()
        c.check("%s exits cleanly and at once (%.1f s)" % (d.name, took), rc == 0 and took < 5,
                str(rc))
    silent.close()


def main(c, tmp):
    kp1, kp3 = ntpg.v6_port(1), ntpg.v6_port(2)
    p = make_pki(tmp, [A(1), A(3)])
    check_config(c, tmp, p, kp1)
    silent, refused, stalled = start_unreachable(tmp, p, ntpg.v6_port(0), ntpg.v6_port(3))
    c.check("the clients without a reachable NTS-KE start", refused.start() and stalled.start())
    s1 = ntpg.Daemon(tmp, [A(1)], stratum=3, name="s1", probe_src=PROBE, extra=[
        "nts enable cert %s key %s" % (p("srv.pem"), p("srv.key")),
        "nts cookie %s port %d" % (p("cookies"), kp1)])
    c.check("ntpgated NTS server starts", s1.start())
    s_base = s1.stats() or {}  # its readiness probes were served plain: one, or more if slow
    check_wrong_ca(c, tmp, p, s1, kp1)

    c.section("chronyd as the NTS server; ntpgated's NTS server")
    ch = ntpg.Daemon(tmp, [A(3)], stratum=2, name="chrony", kind="chronyd", extra=[
        "ntsservercert %s" % p("srv.pem"), "ntsserverkey %s" % p("srv.key"),
        "ntsport %d" % kp3, "ntsdumpdir %s" % tmp])
    c.check("chronyd (NTS server, -x) starts", ch.start())
    c1 = client(tmp, "c1", 2, A(3), kp3, p("ca.pem"), more=["metrics listen %s" % A(2)])
    c2 = client(tmp, "c2", 4, A(1), kp1, p("ca.pem"), kind="pool")
    c.check("the two clients start", c1.start() and c2.start())
    check_synced(c, c1, A(3), "to chronyd")
    check_metrics(c, c1)
    # a pool member: not configured, so 0x7 (authenable, authentic, reachable)
    check_synced(c, c2, A(1), "pool ... nts, to ntpgated", status="7")
    s_before = s1.stats() or {}
    c.check("ntpgated's server answered NTS (served_nts), no NTSN, nothing malformed",
            s_before.get("served_nts", 0) >= 4 and not s_before.get("kod_ntsn_cookie") and
            not s_before.get("kod_ntsn_auth") and not s_before.get("dropped_nts_malformed"),
            str({k: v for k, v in s_before.items() if "nts" in k}))
    c.check("ntpgated's server served no plain time to the NTS client (served 0)",
            s_before.get("served", 0) == s_base.get("served", -1),
            "served %s since the start's probes" % (s_before.get("served", 0) -
                                                    s_base.get("served", 0)))
    check_chroot(c, tmp, p, kp1)
    check_ntsn(c, tmp, p, s1, c2, kp1)
    check_unreachable(c, silent, refused, stalled)
    check_pool_retires(c, tmp, p, kp1, ntpg.v6_port(3))  # the silent listener's port, free now
    for d in (c1, c2, s1):
        rc, took = d.stop()
        c.check("%s exits cleanly" % d.name, rc == 0, str(rc))
    ch.stop()
    keys = [ln.split()[1] for ln in ntpg.read_text(p("cookies")).splitlines()
            if ln.strip() and not ln.startswith("#")]
    c.check("no cookie key material in the client's log",
            keys and not any(k in c2.log_text() for k in keys))


if __name__ == "__main__":
    ntpg.run(main)
