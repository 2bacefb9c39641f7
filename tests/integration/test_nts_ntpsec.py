"""NTPsec 1.2.2's ntpd as an NTS client of ntpgated (RFC 8915), in network namespaces this test
makes: NTPsec refuses loopback addresses other than its own for a server ("attempt to configure
invalid address"), and both daemons want UDP port 123, so the test re-runs itself under
`unshare --net` with ntpgated on 192.0.2.1 and runs each NTPsec in a second namespace with
192.0.2.2, joined to ours by a veth pair (TEST-NET-1, never routed out of these namespaces). With a CA made here by the openssl CLI:
- NTPsec completes NTS-KE with us (certificate verified against the test CA, 8 cookies, AEAD
  15), then sends NTS-protected NTP requests that ntpgated authenticates and answers (served
  through the NTS path, no NTSN, nothing dropped); with that one handshake its requests (seen
  by tshark on the veth) carry more distinct cookies than the eight of NTS-KE, so NTPsec took
  fresh cookies out of our replies' encrypted fields: it opened our authenticator;
- an NTPsec that trusts another CA fails NTS-KE (its log; our counters: a connection closed
  before the handshake) and sends no NTP to us at all: no fallback to plain NTP.
- ntpgated as NTS client of NTPsec's NTS server (NTPsec on 192.0.2.2): one NTS-KE with the
  certificate verified, NTPsec's replies open with the S2C key and bring fresh cookies, every
  request carries NTS. NTPsec 1.2.2 never synchronizes to its LOCAL clock here (as in
  test_client.py), so it answers with the INIT kiss, which our client ignores: no sync shown.
Not shown (docs/nts.md): NTPsec's own view of the association. In these namespaces its ntpq
gets no answer from it and its log shows no peer events, for plain NTP as well as NTS."""

import os
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402
from test_nts import make_pki  # noqa: E402

NTPD = os.path.join(ntpg.PEERS, "usr", "sbin", "ntpd")
SERVER, CLIENT, ROUTER = "192.0.2.1", "192.0.2.2", "192.0.2.254"
CLIENT_OF_NTPSEC = "192.0.2.3"  # our NTS client of NTPsec's server, on lo
RUN = 40  # seconds NTPsec runs: iburst, then minpoll 3 -> more requests than its 8 cookies
CHILD_FLAG = "--in-netns"


def sh(*argv):
    subprocess.run(list(argv), check=True, capture_output=True, timeout=10)


def ntpsec_client_conf(ca):
    return ["server %s nts ca %s iburst minpoll 3 maxpoll 3" % (SERVER, ca)]


def start_ntpsec(tmp, name, lines):
    """NTPsec with these configuration lines in a namespace of its own, the veth end v1 moved
    into it; returns (proc, log, capture on our end of the veth)."""
    conf = ntpg.write_text(os.path.join(tmp, name + ".conf"), "\n".join(lines + [
        "disable ntp", "disable kernel", "interface ignore wildcard",
        "interface listen %s" % CLIENT, "driftfile %s/%s.drift" % (tmp, name),
        "logconfig =all"]) + "\n")
    log = os.path.join(tmp, name + ".log")
    veth()
    pcap = os.path.join(tmp, name + ".pcap")
    cap = ntpg.spawn([ntpg.TSHARK, "-i", "v0", "-f", "udp port 123", "-a",
                      "duration:%d" % (RUN + 30), "-q", "-w", pcap],
                     os.path.join(tmp, name + ".tshark.out"), pcap + ".err")
    ntpg.wait_until(lambda: "Capture started" in ntpg.read_text(pcap + ".err") or
                    cap.poll() is not None, 15, 0.05)
    script = ("i=0; while ! ip link show v1 >/dev/null 2>&1; do i=$((i+1)); "
              "[ $i -gt 100 ] && exit 9; sleep 0.1; done; "
              "ip link set lo up && ip link set v1 up && ip addr add %s/24 dev v1 && "
              "exec %s %s -n -c %s -l %s" % (CLIENT, " ".join(ntpg.SETPRIV), NTPD, conf, log))
    p = ntpg.spawn(["unshare", "--net", "--", "sh", "-c", script],
                   os.path.join(tmp, name + ".out"), os.path.join(tmp, name + ".err"))
    time.sleep(0.3)  # unshare has made the namespace: p.pid is the shell, then ntpd (exec)
    sh("ip", "link", "set", "v1", "netns", str(p.pid))
    return p, log, (cap, pcap)


def request_cookies(capture):
    """(requests to us in the capture, the NTS Cookie field (type 0x0204) of each, in order)."""
    cap, pcap = capture
    if cap.poll() is None:
        time.sleep(2)  # the last request was counted by us: let dumpcap write it out too
        cap.send_signal(signal.SIGINT)  # ours: spawned above
        cap.wait(10)
    out = subprocess.run([ntpg.TSHARK, "-r", pcap, "-Y", "ip.dst == %s" % SERVER, "-T",
                          "fields", "-e", "udp.payload"], capture_output=True,
                         timeout=60).stdout.decode()
    cookies = []
    lines = out.split()
    for line in lines:
        pkt = bytes.fromhex(line.replace(":", ""))
        i = 48
        while i + 4 <= len(pkt):
            t, n = struct.unpack("!HH", pkt[i:i + 4])
            if n < 4:
                break
            if t == 0x0204:
                cookies.append(pkt[i + 4:i + n])
            i += n
    return len(lines), cookies


def stop(p):
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)  # ours: spawned above
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)


def veth():
    """A new veth pair for each NTPsec (its end goes when NTPsec's namespace goes); our address
    stays on lo, so ntpgated's socket outlives the pairs."""
    sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    sh("ip", "link", "set", "v0", "up")
    sh("ip", "addr", "add", ROUTER + "/24", "dev", "v0")


def main(c, tmp):
    if not os.access(NTPD, os.X_OK):
        c.check("NTPsec's ntpd is unpacked (scripts/deps.sh test)", False, NTPD)
        return
    c.section("namespaces: ntpgated on %s, NTPsec on %s (veth)" % (SERVER, CLIENT))
    try:
        sh("ip", "link", "set", "lo", "up")
        sh("ip", "addr", "add", SERVER + "/32", "dev", "lo")
        veth()
        sh("ip", "link", "del", "v0")
    except subprocess.CalledProcessError as e:
        c.check("a veth pair in the test's own namespace", False, e.stderr)
        return
    p = make_pki(tmp, [SERVER, CLIENT])
    d = ntpg.Daemon(tmp, [SERVER], port=123, extra=[
        "nts enable cert %s key %s" % (p("srv.pem"), p("srv.key")),
        "nts cookie %s" % p("cookies")])
    c.check("ntpgated serves NTS on %s" % SERVER, d.start(), d.log_text()[-400:])

    c.section("NTPsec trusting the test CA")
    before = d.stats() or {}
    n, log, cap = start_ntpsec(tmp, "ntpsec", ntpsec_client_conf(p("ca.pem")))
    ntpg.wait_until(lambda: (d.stats(2.0) or {}).get("served_nts", 0) >= 9 or
                    n.poll() is not None, RUN, 2.0)
    # the capture ends before NTPsec does: its namespace takes the veth pair with it, and a
    # capture whose interface vanishes loses what it had not yet written (the last request)
    captured, cookies = request_cookies(cap)
    stop(n)
    after = d.stats() or {}
    dl = ntpg.stats_delta(before, after)
    text = ntpg.read_text(log)
    c.check("NTPsec verified our certificate and took 8 cookies, AEAD 15",
            "certificate is valid" in text and "Got 8 cookies, length 100, aead=15" in text,
            "\n".join(ln for ln in text.splitlines() if "NTSc" in ln)[-600:])
    c.check("exactly one NTS-KE handshake with us", dl.get("nts_ke_handshakes") == 1,
            str({k: v for k, v in dl.items() if k.startswith("nts_ke")}))
    c.check("its NTS requests were authenticated and answered (at least 9)",
            dl.get("served_nts", 0) >= 9 and dl.get("replied", 0) == dl.get("served_nts", 0),
            "served_nts %s replied %s" % (dl.get("served_nts"), dl.get("replied")))
    bad = {k: v for k, v in dl.items() if v and (k.startswith("kod_ntsn") or
                                                 k.startswith("dropped_nts"))}
    c.check("no NTSN sent, no NTS request dropped", not bad, str(bad))
    c.check("the captured requests carry one cookie each (%d of the %s we received)" % (
        captured, dl.get("received")), len(cookies) == captured <= dl.get("received", 0),
        "%d cookies" % len(cookies))
    c.check("NTPsec's requests carried %d distinct cookies after one NTS-KE of 8: it took "
            "fresh cookies out of our authenticated replies" % len(set(cookies)),
            len(set(cookies)) == len(cookies) > 8, [len(x) for x in cookies])

    c.section("NTPsec trusting another CA")
    before = d.stats() or {}
    n, log, cap = start_ntpsec(tmp, "ntpsec-other", ntpsec_client_conf(p("other.pem")))
    ntpg.wait_until(lambda: (d.stats(2.0) or {}).get("nts_ke_accepted", 0) >
                    before.get("nts_ke_accepted", 0) or n.poll() is not None, 15, 1.0)
    time.sleep(10)  # long enough for an iburst, if it fell back to plain NTP
    stop(n)
    dl = ntpg.stats_delta(before, d.stats() or {})
    text = ntpg.read_text(log)
    c.check("NTPsec refused our certificate", "certificate is valid" not in text and
            "NTSc" in text, "\n".join(ln for ln in text.splitlines() if "NTSc" in ln)[-600:])
    c.check("we saw it: a connection, no handshake, closed by the client (no alert)",
            dl.get("nts_ke_accepted", 0) >= 1 and dl.get("nts_ke_handshakes", 0) == 0 and
            dl.get("nts_ke_tls_failed", 0) + dl.get("nts_ke_closed_early", 0) >= 1,
            str({k: v for k, v in dl.items() if k.startswith("nts_ke")}))
    c.check("nothing on the wire to our UDP port 123", request_cookies(cap)[0] == 0 and
            dl.get("received", 0) == 0, "received %s" % dl.get("received"))
    c.check("and it sent us no NTP at all (no fallback to plain NTP)",
            dl.get("received", 0) == 0, "received %s" % dl.get("received"))
    ntpsec_server(c, tmp, p)
    d.stop()
    c.check("ntpgated exits cleanly", d.rc == 0, str(d.rc))


def ntpsec_server(c, tmp, p):
    c.section("ntpgated as NTS client of NTPsec's NTS server (%s)" % CLIENT)
    n, log, cap = start_ntpsec(tmp, "ntpsec-server", [
        "server 127.127.1.0 minpoll 3 maxpoll 3", "fudge 127.127.1.0 stratum 8",
        "nts enable", "nts cert %s" % p("srv.pem"), "nts key %s" % p("srv.key"),
        "nts cookie %s" % p("ntpsec-cookies")])
    sh("ip", "addr", "add", CLIENT_OF_NTPSEC + "/32", "dev", "lo")
    cl = ntpg.Daemon(tmp, [CLIENT_OF_NTPSEC], port=123, stratum=None, name="nts-client",
                     extra=["server %s nts ca %s iburst minpoll 3 maxpoll 3" % (CLIENT, p("ca.pem"))])
    c.check("our NTS client starts (answers on %s)" % CLIENT_OF_NTPSEC, cl.start())
    st = ntpg.wait_until(lambda: (lambda s: s if s.get("client_nts_auth", 0) >= 4 else None)(
        cl.stats(2.0) or {}), 45, 2.0) or cl.stats() or {}
    cl.stop()
    stop(n)
    text = ntpg.read_text(log)
    c.info("NTPsec's NTS-KE server: %s" % " | ".join(
        ln.split(": ", 1)[-1] for ln in text.splitlines() if "NTSs: NTS-KE from" in ln)[-300:])
    c.check("one NTS-KE with NTPsec (certificate verified against the test CA)",
            st.get("client_nts_ke_ok") == 1 and st.get("client_nts_ke_fail_verify", 0) == 0,
            str({k: v for k, v in st.items() if k.startswith("client_nts")}))
    c.check("NTPsec's replies opened with the S2C key (at least 4), none dropped",
            st.get("client_nts_auth", 0) >= 4 and st.get("client_nts_dropped_unauth", 0) == 0,
            str({k: v for k, v in st.items() if k.startswith("client_nts")}))
    c.check("they brought fresh cookies: more than the 8 of NTS-KE came in",
            st.get("client_nts_cookies", 0) > 8, str(st.get("client_nts_cookies")))
    # NTPsec 1.2.2 never synchronizes to its LOCAL clock here (test_client.py says so too):
    # it answers LI 3, stratum 0 (kiss INIT), which the client takes as a kiss to ignore; if
    # it does synchronize elsewhere, its replies are samples
    samples, kisses = st.get("client_sample", 0), st.get("client_kod_ignored", 0)
    client = {k: v for k, v in st.items() if k.startswith("client_") and v}
    c.check("every authenticated reply was a sample or an ignored kiss (INIT: NTPsec "
            "unsynchronized): samples %d, kisses ignored %d" % (samples, kisses),
            samples + kisses >= st.get("client_nts_auth", 0) > 0, str(client))
    c.check("no plain NTP sent: every request carried NTS (no poll without a cookie)",
            st.get("client_nts_no_cookie", 0) == 0 and
            st.get("client_requests", 0) >= st.get("client_nts_auth", 0), str(client))


if __name__ == "__main__":
    if CHILD_FLAG in sys.argv:
        sys.argv.remove(CHILD_FLAG)
        ntpg.run(main)
    else:  # the whole test in a network namespace of its own (own port 123, own addresses)
        sys.exit(subprocess.run(["unshare", "--net", "--", ntpg.PYTHON,
                                 os.path.abspath(__file__), CHILD_FLAG]).returncode)
