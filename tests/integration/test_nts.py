"""NTS-KE (RFC 8915 section 4) served by ntpgated, with a CA and server certificate made here by
the openssl CLI: `-t` checks that the certificate and key load and match (FILE:LINE); Python's
TLS 1.3 client (ALPN ntske/1) gets eight 100-octet cookies and the negotiated records; a client
trusting another CA gets nothing; chronyd 4.3 (`nts`, `ntstrustedcerts`) completes NTS-KE with
us; a wrong AEAD, an unknown critical record, an oversized record, a request cut short and a
client without ntske/1 each get what the RFC says and are counted; a silent client is closed
after the timeout while plain time is answered; 1,000 concurrent NTS-KE connections from 16
addresses are held while plain time is still answered. NTS inside NTP packets is not served
yet (docs/nts.md): chronyd's NTS requests are answered as plain NTP, which it rejects."""

import os
import resource
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

GOOD_REQ = bytes.fromhex("8001000200008004" "0002000f80000000")


def openssl(args, cwd):
    rc, out, err = ntpg.run_tool(["openssl"] + args, 30)
    if rc != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), err))


def make_pki(tmp, addr):
    """A CA, a server certificate for addr (IP SAN) and ntske.test (DNS SAN), a second CA."""
    p = lambda n: os.path.join(tmp, n)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl(["req", "-x509"] + ec + ["-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2",
                                     "-subj", "/CN=ntpgate test CA"], tmp)
    openssl(["req", "-x509"] + ec + ["-keyout", p("other.key"), "-out", p("other.pem"), "-days",
                                     "2", "-subj", "/CN=another CA"], tmp)
    openssl(["req"] + ec + ["-keyout", p("srv.key"), "-out", p("srv.csr"), "-subj",
                            "/CN=ntske.test"], tmp)
    ntpg.write_text(p("ext"), "subjectAltName=IP:%s,DNS:ntske.test\n" % addr)
    openssl(["x509", "-req", "-in", p("srv.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
             "-CAcreateserial", "-out", p("srv.pem"), "-days", "2", "-extfile", p("ext")], tmp)
    return p


def tls_ctx(ca, alpn=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if alpn:
        ctx.set_alpn_protocols(["ntske/1"])
    return ctx


def records(data):
    out, i = [], 0
    while i + 4 <= len(data):
        t, n = struct.unpack("!HH", data[i:i + 4])
        out.append((t, data[i + 4:i + 4 + n]))
        i += 4 + n
    return out


def ke(addr, port, ca, request=GOOD_REQ, alpn=True, close_after_send=False, src=None):
    """One NTS-KE exchange: (records, error) -- error is the TLS failure text, or None."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(8)
    try:
        if src:
            raw.bind((src, 0))
        raw.connect((addr, port))
        s = tls_ctx(ca, alpn).wrap_socket(raw, server_hostname=addr)
        s.sendall(request)
        if close_after_send:
            s.close()
            return [], None
        data = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
        s.close()
        return records(data), None
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return [], str(e)


def check_config(c, tmp, p, addr, kport):
    good = ntpg.write_text(os.path.join(tmp, "t_good.conf"),
                           "nts enable cert %s key %s port %d\n" % (p("srv.pem"), p("srv.key"),
                                                                    kport))
    rc, out, err = ntpg.run_tool([ntpg.DAEMON, "-t", "-c", good], 30)
    c.check("-t accepts a matching certificate and key", rc == 0, out + err)
    bad = ntpg.write_text(os.path.join(tmp, "t_bad.conf"),
                          "# a key of another certificate\nnts enable\nnts cert %s key %s\n"
                          % (p("srv.pem"), p("other.key")))
    rc, out, err = ntpg.run_tool([ntpg.DAEMON, "-t", "-c", bad], 30)
    c.check("-t refuses a key that does not match, as FILE:3: nts: ...", rc != 0 and
            "%s:3: nts:" % bad in out + err and "does not match" in out + err, out + err)
    tls12 = ntpg.write_text(os.path.join(tmp, "t_tls12.conf"), "nts mintls TLS1.2\n")
    rc, out, err = ntpg.run_tool([ntpg.DAEMON, "-t", "-c", tls12], 30)
    c.check("-t refuses TLS 1.2 with the RFC's reason", rc != 0 and "TLS 1.3 only" in out + err,
            out + err)


def check_good_and_wrong_ca(c, d, p, addr, kport):
    before = d.stats() or {}
    recs, err = ke(addr, kport, p("ca.pem"))
    cookies = [b for t, b in recs if t & 0x7fff == 5]
    c.check("a TLS 1.3 client with ALPN ntske/1 gets 8 cookies of 100 octets",
            err is None and len(cookies) == 8 and all(len(k) == 100 for k in cookies),
            "err=%s records=%s" % (err, [(hex(t), len(b)) for t, b in recs]))
    c.check("next protocol NTPv4 and AEAD 15 are negotiated, End of Message last",
            recs[:2] == [(0x8001, b"\0\0"), (0x8004, b"\0\x0f")] and recs[-1] == (0x8000, b""),
            str(recs[:2]))
    c.check("the cookies differ from each other", len(set(cookies)) == 8)
    recs, err = ke(addr, kport, p("other.pem"))
    c.check("a client trusting another CA gets nothing (its verification fails)",
            not recs and err is not None and "CERTIFICATE_VERIFY_FAILED" in err, str(err))
    after = d.stats() or {}
    c.check("counters: 1 handshake, 8 cookies, 1 TLS failure (the other CA)",
            after.get("nts_ke_handshakes", 0) - before.get("nts_ke_handshakes", 0) == 1 and
            after.get("nts_ke_cookies_issued", 0) - before.get("nts_ke_cookies_issued", 0) == 8 and
            after.get("nts_ke_tls_failed", 0) - before.get("nts_ke_tls_failed", 0) == 1,
            str({k: v for k, v in after.items() if k.startswith("nts")}))


def check_bad_requests(c, d, p, addr, kport):
    before = d.stats() or {}
    wrong = bytes.fromhex("80010002000080040002001080000000")  # AEAD 16 only
    recs, err = ke(addr, kport, p("ca.pem"), wrong)
    c.check("wrong AEAD: an empty AEAD record and no cookies",
            recs == [(0x8001, b"\0\0"), (0x8004, b""), (0x8000, b"")], "%s %s" % (recs, err))
    crit = bytes.fromhex("800100020000c00100008004" "0002000f80000000")
    recs, err = ke(addr, kport, p("ca.pem"), crit)
    c.check("unknown critical record: error 0 (Unrecognized Critical Record)",
            recs == [(0x8002, b"\0\0"), (0x8000, b"")], "%s %s" % (recs, err))
    big = bytes.fromhex("800100020000") + struct.pack("!HH", 0x4009, 0xffff) + b"\0" * 2000
    recs, err = ke(addr, kport, p("ca.pem"), big)
    c.check("oversized record: error 1 (Bad Request) at its header",
            recs == [(0x8002, b"\0\x01"), (0x8000, b"")], "%s %s" % (recs, err))
    ke(addr, kport, p("ca.pem"), GOOD_REQ[:9], close_after_send=True)
    recs, err = ke(addr, kport, p("ca.pem"), alpn=False)
    c.check("no ALPN at all: closed without an answer (counted as a TLS failure below)",
            not recs, "%s %s" % (recs, err))
    want = {"nts_ke_no_aead": 1, "nts_ke_unknown_critical": 1, "nts_ke_bad_request": 1,
            "nts_ke_tls_failed": 1, "nts_ke_closed_early": 1}
    after = ntpg.wait_until(lambda: (lambda s: s if s and all(
        s.get(k, 0) - before.get(k, 0) >= v for k, v in want.items()) else None)(d.stats()), 5)
    got = {k: (after or {}).get(k, 0) - before.get(k, 0) for k in want}
    c.check("each outcome counted once: %s" % want, got == want, str(got))


def check_chronyd(c, tmp, d, p, addr, port, kport):
    before = d.stats() or {}
    dd = os.path.join(tmp, "chrony")
    os.makedirs(dd, exist_ok=True)
    conf = ntpg.write_text(os.path.join(dd, "c.conf"), "\n".join([
        "server %s port %d iburst nts ntsport %d minpoll -2 maxpoll -2" % (addr, port, kport),
        "ntstrustedcerts %s" % p("ca.pem"), "nosystemcert", "pidfile %s/p" % dd,
        "driftfile %s/drift" % dd, "cmdport 0", "logdir %s" % dd, "ntsdumpdir %s" % dd]) + "\n")
    rc, out, err = ntpg.run_tool([ntpg.CHRONYD, "-Q", "-u", "root", "-t", "4", "-f", conf], 15)
    after = d.stats() or {}
    got = after.get("nts_ke_handshakes", 0) - before.get("nts_ke_handshakes", 0)
    c.check("chronyd 4.3 (nts, ntstrustedcerts) completes NTS-KE with ntpgated", got >= 1,
            "handshakes +%d; chronyd rc=%s %s" % (got, rc, (out + err)[-300:]))
    c.info("chronyd then sends NTS-protected requests; they are answered as plain NTP (NTS in "
           "NTP packets is not served yet), so chronyd takes no time from us (rc=%s)" % rc)


def check_silent_and_many(c, d, p, addr, port, kport):
    before = d.stats() or {}
    silent = socket.create_connection((addr, kport))
    t0 = time.monotonic()
    r = ntpg.query(addr, port, timeout=1.0)
    c.check("a silent NTS-KE client does not delay plain time", r is not None)
    out = ntpg.wait_until(lambda: (lambda s: s if s and s.get("nts_ke_timeouts", 0) >
                                   before.get("nts_ke_timeouts", 0) else None)(d.stats()), 10)
    c.check("the silent client is closed after the timeout (5 s)", out is not None,
            "after %.1f s" % (time.monotonic() - t0))
    silent.close()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    conns = []
    try:
        for i in range(1000):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((ntpg.source_addr(1 + i % 16), 0))
            s.settimeout(3)
            s.connect((addr, kport))
            conns.append(s)
        answered = sum(1 for _ in range(20) if ntpg.query(addr, port, timeout=1.0))
        c.check("1,000 open NTS-KE connections: plain time still answered (20 of 20)",
                answered == 20, "%d answered" % answered)
        recs, err = ke(addr, kport, p("ca.pem"), src=ntpg.source_addr(17))
        c.check("... and a full NTS-KE handshake from another address still gets cookies",
                len([1 for t, _ in recs if t == 5]) == 8, str(err))
    finally:
        for s in conns:
            s.close()
    s = ntpg.wait_until(lambda: (lambda s: s if s and s.get("nts_ke_accepted", 0) -
                                 before.get("nts_ke_accepted", 0) >= 1002 else None)(d.stats()), 10)
    c.check("all of them were accepted (none refused: 63 per address, under the limit)",
            s is not None and s.get("nts_ke_refused_addr", 0) == 0 and
            s.get("nts_ke_refused_full", 0) == 0, str(s and {k: v for k, v in s.items()
                                                            if k.startswith("nts")}))


def main(c, tmp):
    addr = ntpg.server_addr(1)
    port = 123
    kport = ntpg.v6_port(3)  # a TCP port: distinct per test and salt
    p = make_pki(tmp, addr)
    check_config(c, tmp, p, addr, kport)
    d = ntpg.Daemon(tmp, [addr], port=port, extra=[
        "nts enable cert %s key %s" % (p("srv.pem"), p("srv.key")),
        "nts cookie %s port %d" % (p("cookies"), kport)])
    d.start()
    c.check("the cookie key file is written, mode 0600",
            os.path.exists(p("cookies")) and os.stat(p("cookies")).st_mode & 0o777 == 0o600)
    check_good_and_wrong_ca(c, d, p, addr, kport)
    check_bad_requests(c, d, p, addr, kport)
    check_chronyd(c, tmp, d, p, addr, port, kport)
    check_silent_and_many(c, d, p, addr, port, kport)
    d.stop()
    c.check("daemon exits cleanly", d.rc == 0, str(d.rc))
    c.check("no cookie key material in the log",
            ntpg.read_text(p("cookies")).split()[1] not in d.log_text())


if __name__ == "__main__":
    ntpg.run(main)
