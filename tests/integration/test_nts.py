"""NTS-KE (RFC 8915 section 4) served by ntpgated, with a CA and server certificate made here by
the openssl CLI: `-t` checks that the certificate and key load and match (FILE:LINE); Python's
TLS 1.3 client (ALPN ntske/1) gets eight 100-octet cookies and the negotiated records; a client
trusting another CA gets nothing; chronyd 4.3 (`nts`, `ntstrustedcerts`) completes NTS-KE with
us; a wrong AEAD, an unknown critical record, an oversized record, a request cut short and a
client without ntske/1 each get what the RFC says and are counted; a silent client is closed
after the timeout while plain time is answered; 1,000 concurrent NTS-KE connections from 16
addresses are held while plain time is still answered. NTS inside NTP packets (RFC 8915
section 5): chronyd -Q takes authenticated time from us; a small NTS client written here (its
cookies sealed with the master key read from the `nts cookie` file, AES-SIV from python3's
cryptography package) checks the reply's fields and cookies, the size rule, tampered cookies,
unknown master keys and tampered authenticators (NTSN KoD echoing the identifier),
malformed NTS fields (dropped), replays (answered: docs/nts.md), and each outcome's counter;
`restrict noserve` addresses get no NTS-KE."""

import os
import resource
import socket
import ssl
import struct
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import AESSIV

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

GOOD_REQ = bytes.fromhex("8001000200008004" "0002000f80000000")


def openssl(args, cwd):
    rc, out, err = ntpg.run_tool(["openssl"] + args, 30)
    if rc != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), err))


def make_pki(tmp, addrs):
    """A CA, a server certificate for addrs (one address or a list: IP SANs) and ntske.test
    (DNS SAN), a second CA."""
    p = lambda n: os.path.join(tmp, n)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl(["req", "-x509"] + ec + ["-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2",
                                     "-subj", "/CN=ntpgate test CA"], tmp)
    openssl(["req", "-x509"] + ec + ["-keyout", p("other.key"), "-out", p("other.pem"), "-days",
                                     "2", "-subj", "/CN=another CA"], tmp)
    openssl(["req"] + ec + ["-keyout", p("srv.key"), "-out", p("srv.csr"), "-subj",
                            "/CN=ntske.test"], tmp)
    addrs = [addrs] if isinstance(addrs, str) else addrs
    ntpg.write_text(p("ext"), "subjectAltName=%s,DNS:ntske.test\n" %
                    ",".join("IP:" + a for a in addrs))
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


def ke(addr, port, ca, request=GOOD_REQ, alpn=True, close_after_send=False, src=None,
       ctx=None, nodelay=False):
    """One NTS-KE exchange: (records, error) -- error is the TLS failure text, or None.
    ctx: a context made once by tls_ctx (else one from ca and alpn); nodelay: TCP_NODELAY."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(8)
    if nodelay:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if src:
            raw.bind((src, 0))
        raw.connect((addr, port))
        s = (ctx or tls_ctx(ca, alpn)).wrap_socket(raw, server_hostname=addr)
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
    # the server counts the failure when the client's alert arrives, maybe after we returned
    after = ntpg.wait_until(lambda: (lambda s: s if s and s.get("nts_ke_tls_failed", 0) >
                                     before.get("nts_ke_tls_failed", 0) else None)(d.stats()),
                            5) or d.stats() or {}
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
    served = after.get("served_nts", 0) - before.get("served_nts", 0)
    c.check("chronyd -Q takes authenticated time from us (its measurement line, served_nts "
            "+%d, no NTSN)" % served,
            rc == 0 and "System clock wrong by" in out + err and served >= 1 and
            not after.get("kod_ntsn_auth") and not after.get("kod_ntsn_cookie"),
            "rc=%s %s" % (rc, (out + err)[-300:]))


# ---- a small NTS client: cookies made with the master key from the `nts cookie` file ----

def ef(t, body):
    body += b"\0" * (-len(body) % 4)
    return struct.pack("!HH", t, 4 + len(body)) + body


def fields(data, off=48):
    out = []
    while off + 4 <= len(data):
        t, n = struct.unpack("!HH", data[off:off + 4])
        if n < 4 or off + n > len(data):
            break
        out.append((t, off, data[off + 4:off + n]))
        off += n
    return out


class Nts:
    """Keys and a cookie as NTS-KE would have given them (RFC 8915 section 6: our cookie is
    key id | nonce | AES-SIV(master key; AD key id, nonce; C2S | S2C))."""

    def __init__(self, cookie_file, key_id=None):
        kid, hexkey = ntpg.read_text(cookie_file).split()[:2]
        self.c2s, self.s2c = os.urandom(32), os.urandom(32)
        kid = int(kid) if key_id is None else key_id
        idb, nonce = struct.pack("!I", kid), os.urandom(16)
        self.cookie = idb + nonce + AESSIV(bytes.fromhex(hexkey)).encrypt(
            self.c2s + self.s2c, [idb, nonce])

    def request(self, placeholders=0, inner=b"", uid=None, cookie=None, tamper=None):
        self.uid = uid if uid is not None else os.urandom(32)
        hdr = bytes([0x23]) + b"\0" * 39 + os.urandom(8)
        body = hdr + ef(0x0104, self.uid) + ef(0x0204, cookie or self.cookie)
        body += b"".join(ef(0x0304, bytes(len(self.cookie))) for _ in range(placeholders))
        nonce = os.urandom(16)
        # cryptography's AES-SIV will not seal an empty plaintext: an encrypted field is inside
        pt = inner or ef(0x7f00, bytes(12))
        ct = AESSIV(self.c2s).encrypt(pt, [body, nonce])
        if tamper == "tag":
            ct = bytes([ct[0] ^ 1]) + ct[1:]
        auth = struct.pack("!HH", 16, len(ct)) + nonce + ct
        pkt = body + ef(0x0404, auth)
        if tamper == "header":
            pkt = pkt[:16] + b"\x01" + pkt[17:]
        return pkt

    def open_reply(self, raw):
        """("ok", cookies) | ("nak", None) | (reason, None)."""
        fs = fields(raw)
        uid = [b for t, _, b in fs if t == 0x0104]
        if uid != [self.uid]:
            return "uid", None
        auth = [(o, b) for t, o, b in fs if t == 0x0404]
        if not auth:
            return ("nak" if raw[1] == 0 and raw[12:16] == b"NTSN" else "noauth"), None
        off, b = auth[0]
        nl, cl = struct.unpack("!HH", b[:4])
        nonce, ct = b[4:4 + nl], b[4 + nl + (-nl % 4):][:cl]
        try:
            pt = AESSIV(self.s2c).decrypt(ct, [raw[:off], nonce])
        except Exception:  # InvalidTag
            return "badauth", None
        return "ok", [b for t, _, b in fields(pt, 0) if t == 0x0204]


def delta(d, before, keys):
    after = ntpg.wait_until(lambda: d.stats(), 5) or {}
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}


def ask_kod(addr, port, client, make):
    """An NTSN KoD for a request make() builds: KoDs share a global limit (a few per second),
    so a refused one is asked again after a pause (bounded). Returns (raw or None, tries)."""
    for i in range(6):
        r = ntpg.query(addr, port, packet=make(), timeout=1.0)
        if r is not None:
            return r, i + 1
        time.sleep(1.1)
    return None, 6


def check_nts_packets(c, d, p, addr, port):
    keys = ("served_nts", "kod_ntsn_cookie", "kod_ntsn_auth", "dropped_nts_malformed")
    before = d.stats() or {}
    n = Nts(p("cookies"))
    req = n.request()
    r = ntpg.query(addr, port, packet=req, timeout=2.0)
    st, cookies = n.open_reply(r["raw"]) if r else ("none", None)
    c.check("an NTS request is answered with the identifier and an authenticator that "
            "verifies under S2C, holding one fresh 100-octet cookie",
            st == "ok" and cookies is not None and [len(x) for x in cookies] == [100], st)
    c.check("... the reply is a server reply (mode 4, stratum != 0) no larger than the request",
            r is not None and r["raw"][0] & 7 == 4 and r["raw"][1] != 0 and
            len(r["raw"]) <= len(req), r and "%d > %d" % (len(r["raw"]), len(req)))
    if cookies:  # the fresh cookie opens to the same session
        n2 = Nts(p("cookies"))
        n2.c2s, n2.s2c, n2.cookie = n.c2s, n.s2c, cookies[0]
        r2 = ntpg.query(addr, port, packet=n2.request(), timeout=2.0)
        c.check("... and the fresh cookie is accepted in the next request",
                r2 is not None and n2.open_reply(r2["raw"])[0] == "ok")
    req = n.request(placeholders=5, inner=ef(0x0304, bytes(100)) + ef(0x0304, bytes(100)))
    r = ntpg.query(addr, port, packet=req, timeout=2.0)
    st, cookies = n.open_reply(r["raw"]) if r else ("none", None)
    c.check("1 cookie + 5 placeholders + 2 encrypted placeholders: 8 cookies, reply no larger "
            "than the request", st == "ok" and len(cookies or []) == 8 and
            len(r["raw"]) <= len(req), "%s %d" % (st, len(cookies or [])))
    r = ntpg.query(addr, port, packet=n.request(placeholders=9), timeout=2.0)
    st, cookies = n.open_reply(r["raw"]) if r else ("none", None)
    c.check("1 cookie + 9 placeholders: at most 8 cookies", st == "ok" and len(cookies) == 8)
    # replay: the same datagram twice is answered twice (no server-side replay detection:
    # RFC 8915 leaves it to the client, which drops a reply whose identifier it has used)
    req = n.request()
    a, b = (ntpg.query(addr, port, packet=req, timeout=2.0) for _ in range(2))
    c.check("a replayed request is answered again, with fresh cookies (docs/nts.md)",
            a is not None and b is not None and n.open_reply(b["raw"])[0] == "ok" and
            a["raw"] != b["raw"])
    mid = len(n.cookie) // 2
    bad = n.cookie[:mid] + bytes([n.cookie[mid] ^ 0x20]) + n.cookie[mid + 1:]
    tries = 0
    r, k = ask_kod(addr, port, n, lambda: n.request(cookie=bad))
    tries += k
    c.check("a tampered cookie gets an NTSN KoD: stratum 0, the identifier echoed, no "
            "authenticator, 84 octets", r is not None and n.open_reply(r["raw"])[0] == "nak" and
            len(r["raw"]) == 48 + 36, r and r["raw"][:16].hex())
    other = Nts(p("cookies"), key_id=12345)
    r, k = ask_kod(addr, port, other, other.request)
    tries += k
    c.check("a cookie under a master key we do not hold: NTSN",
            r is not None and other.open_reply(r["raw"])[0] == "nak")
    r, k = ask_kod(addr, port, n, lambda: n.request(tamper="tag"))
    tries += k
    c.check("an authenticator that does not verify: NTSN (RFC 8915 section 5.7)",
            r is not None and n.open_reply(r["raw"])[0] == "nak")
    r, k = ask_kod(addr, port, n, lambda: n.request(tamper="header"))
    tries += k
    c.check("a header changed after sealing (stratum octet): NTSN",
            r is not None and n.open_reply(r["raw"])[0] == "nak")
    req = n.request()
    noid = req[:48] + struct.pack("!H", 0x7f01) + req[50:]
    r = ntpg.query(addr, port, packet=noid, timeout=1.0)
    c.check("no Unique Identifier: no answer at all (nothing to echo in a KoD)", r is None)
    got = delta(d, before, keys + ("dropped_nts_cookie", "dropped_nts_auth"))
    want = {"served_nts": 6, "kod_ntsn_cookie": 2, "kod_ntsn_auth": 2,
            "dropped_nts_malformed": 1}
    c.check("counted: %s, and every NTSN the KoD limit refused as dropped_nts_*" % want,
            {k: got[k] for k in keys} == want and
            got["dropped_nts_cookie"] + got["dropped_nts_auth"] == tries - 4, str(got))


def check_restrict(c, d, p, addr, kport):
    before = d.stats() or {}
    for k in (19, 20):
        recs, err = ke(addr, kport, p("ca.pem"), src=ntpg.source_addr(k))
        c.check("NTS-KE from a `restrict %s` address: closed at accept, no cookies" %
                ("noserve" if k == 19 else "ignore"),
                not [1 for t, _ in recs if t == 5] and err is not None, str(err))
    recs, err = ke(addr, kport, p("ca.pem"), src=ntpg.source_addr(21))
    c.check("... while another address gets its cookies", len([1 for t, _ in recs if t == 5]) == 8,
            str(err))
    got = delta(d, before, ["nts_ke_refused_restrict"])
    c.check("counted as nts_ke_refused_restrict +2", got == {"nts_ke_refused_restrict": 2},
            str(got))


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


def check_counters_exported(c, d, addr, mport):
    """The NTS-KE counters through ntpq (rv 0 nts_ke_NAME) and the metrics endpoint, against
    the stats lines; promtool finds the exposition clean. The 1,000 connections above may
    still be closing (tls_failed, closed_early rise), so the three reads, in this order, may
    only grow; what no client moves any more is equal in all three."""
    from test_metrics import PROMTOOL, get_metrics, sample
    st = d.stats() or {}
    names = sorted(k for k in st if k.startswith("nts_ke_"))
    rc, out, err = ntpg.run_ntpq(addr, ["rv 0 " + ",".join(names)])
    v = {k: int(x) for k, x in ntpg.parse_vars(out).items() if x.isdigit()}
    head, body = get_metrics(addr, mport)
    m = {k: sample(body, 'ntpgate_nts_ke_events_total{event="%s"}' % k[7:]) for k in names}
    still = ("nts_ke_handshakes", "nts_ke_cookies_issued", "nts_ke_refused_restrict",
             "nts_ke_no_aead", "nts_ke_unknown_critical", "nts_ke_key_rotations")
    c.check("ntpq rv 0 reads the %d NTS-KE counters: as the log has them, or later" % len(names),
            len(names) == 14 and all(k in v and st[k] <= v[k] for k in names) and
            all(v[k] == st[k] for k in still), "handshakes %s" % v.get("nts_ke_handshakes"),
            why="log %s, ntpq %s %s" % ({k: st[k] for k in names}, v, err[-200:]))
    c.check("the metrics endpoint has them as ntpgate_nts_ke_events_total{event=...}",
            all(m[k] is not None and v.get(k, 0) <= m[k] for k in names) and
            all(m[k] == st[k] for k in still) and st.get("nts_ke_handshakes", 0) > 0,
            "handshakes %s" % m.get("nts_ke_handshakes"), why="metrics %s vs ntpq %s" % (m, v))
    p = ntpg.subprocess.run([PROMTOOL, "check", "metrics"], input=body.encode(),
                            capture_output=True, timeout=30)
    msg = (p.stdout + p.stderr).decode(errors="replace")
    c.check("promtool check metrics: clean with the NTS families", p.returncode == 0 and
            not msg.strip(), why=msg[:400])


def main(c, tmp):
    addr = ntpg.server_addr(1)
    port = 123
    kport = ntpg.v6_port(3)  # a TCP port: distinct per test and salt
    mport = ntpg.v6_port(2)  # the metrics endpoint's
    p = make_pki(tmp, addr)
    check_config(c, tmp, p, addr, kport)
    d = ntpg.Daemon(tmp, [addr], port=port, extra=[
        "nts enable cert %s key %s" % (p("srv.pem"), p("srv.key")),
        "nts cookie %s port %d" % (p("cookies"), kport),
        "metrics listen %s port %d" % (addr, mport),
        "restrict %s noserve" % ntpg.source_addr(19),
        "restrict %s ignore" % ntpg.source_addr(20)])
    d.start()
    c.check("the cookie key file is written, mode 0600",
            os.path.exists(p("cookies")) and os.stat(p("cookies")).st_mode & 0o777 == 0o600)
    check_good_and_wrong_ca(c, d, p, addr, kport)
    check_bad_requests(c, d, p, addr, kport)
    check_chronyd(c, tmp, d, p, addr, port, kport)
    check_nts_packets(c, d, p, addr, port)
    check_restrict(c, d, p, addr, kport)
    check_silent_and_many(c, d, p, addr, port, kport)
    check_counters_exported(c, d, addr, mport)
    d.stop()
    c.check("daemon exits cleanly", d.rc == 0, str(d.rc))
    c.check("no cookie key material in the log",
            ntpg.read_text(p("cookies")).split()[1] not in d.log_text())


if __name__ == "__main__":
    ntpg.run(main)
