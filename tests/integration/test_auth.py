"""Symmetric-key authentication, server side: ntpdig (-k/-a) and `chronyd -Q` (keyfile, `key N`)
get authenticated time for every key type they can use with ntpgated; hand-built requests check
what each failure returns (crypto-NAK, CRYP KoD, notrust drop and DENY KoD) byte by byte and by
counter; tshark decodes MACed replies cleanly; a SIGHUP reload swaps key secrets, and a bad keys
file is refused with FILE:LINE errors that never show key material.

Every MAC this file asserts on is computed here, independently of ntpgated: hashlib for the
digests (RFC 5905: H(key || packet), SHA-2 cut to 20 octets) and the `openssl mac` command for
AES-128-CMAC (RFC 8573), itself checked against RFC 4493 example 2 first."""

import hashlib
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

LIMIT = 1e-3  # seconds: chronyd -Q timestamps in C, close to the socket
NTPDIG_LIMIT = 5e-3  # ntpdig is Python: under a loaded machine (parallel suites) its own
#                      timestamps drift by a few ms; what matters here is the MAC
STRATUM = 4
OPENSSL = "/usr/bin/openssl"


# ---------------------------------------------------------------------------------------------
# Keys and MACs, computed without ntpgated
# ---------------------------------------------------------------------------------------------

def fixed_hex(label, octets):
    """A deterministic key of `octets` octets, different for every label (test keys only)."""
    return hashlib.sha256(b"ntpgate test_auth " + label.encode()).hexdigest()[:2 * octets]


class Key:
    """One key: id, ntpd type name, secret text as written in an ntpd keys file, and the
    octets it stands for (ASCII up to 20 characters, else hex, as ntpd reads it)."""

    def __init__(self, kid, kind, text, chrony_type=None):
        self.id, self.kind, self.text = kid, kind, text
        self.secret = text.encode() if len(text) <= 20 else bytes.fromhex(text)
        self.chrony_type = chrony_type

    def ntpd_line(self, extra=""):
        return ("%d %s %s %s" % (self.id, self.kind, self.text, extra)).rstrip()

    def chrony_line(self):
        enc = "ASCII:" + self.text if len(self.text) <= 20 else "HEX:" + self.text
        return "%d %s %s" % (self.id, self.chrony_type, enc)

    def with_text(self, text):
        return Key(self.id, self.kind, text, self.chrony_type)


def cmac(secret, data):
    """AES-128-CMAC by the openssl command line."""
    p = subprocess.run([OPENSSL, "mac", "-cipher", "AES-128-CBC", "-macopt",
                        "hexkey:" + secret.hex(), "CMAC"], input=data, capture_output=True,
                       timeout=10)
    return bytes.fromhex(p.stdout.decode().strip())


def digest(kind, secret, data):
    """The digest of an NTP MAC over data."""
    kind = kind.upper()
    if kind == "MD5":
        return hashlib.md5(secret + data).digest()
    if kind == "SHA1":
        return hashlib.sha1(secret + data).digest()
    if kind in ("SHA224", "SHA256", "SHA384", "SHA512"):
        return hashlib.new(kind.lower(), secret + data).digest()[:20]
    if kind == "AES128CMAC":
        return cmac(secret, data)
    raise ValueError(kind)


def sign(pkt, key, kid=None):
    return pkt + struct.pack("!I", key.id if kid is None else kid) + \
        digest(key.kind, key.secret, pkt)


def mac_verifies(raw, key):
    """True if raw = 48-octet header + key id + the digest we compute under key."""
    return len(raw) > 52 and raw[48:52] == struct.pack("!I", key.id) and \
        raw[52:] == digest(key.kind, key.secret, raw[:48])


# ---------------------------------------------------------------------------------------------
# Raw exchanges
# ---------------------------------------------------------------------------------------------

def section_notrust_bad_mac(c, srv, s):
    """Issue 13 item 5, ntp_acc(5) `notrust`: "deny packets unless the packet is
    cryptographically authenticated". A crypto-NAK carries our full header (stratum, reference
    time, receive time), so a notrust source with a MAC that does not verify gets nothing, or
    with `kod` a CRYP KoD (its own timestamps only); a source without notrust still gets the
    crypto-NAK."""
    c.section("notrust: a bad MAC never gets our time")

    def bad_cases():
        g = sign(ntpg.client_request(), K_MD5)
        return [("wrong MD5 digest", g[:-1] + bytes([g[-1] ^ 1])),
                ("unknown key id 99", sign(ntpg.client_request(), K_MD5, kid=99)),
                ("untrusted key 5", sign(ntpg.client_request(), K_UNTRUSTED)),
                ("key 6 off its address list", sign(ntpg.client_request(), K_ADDR))]

    for label, pkt in bad_cases():
        reps, dl = srv.ask(pkt, s.notrust, expect_reply=False)
        c.check("notrust source, %s: no reply at all" % label, reps == [],
                "%d replies, first %s" % (len(reps), reps[0][:48].hex() if reps else ""))
        c.check("notrust source, %s: dropped_notrust +1, no crypto_nak" % label,
                dl == {"dropped_notrust": 1}, show(dl))
    for label, pkt in bad_cases():
        reps, dl = srv.ask(pkt, s.notrust_kod)
        expect_kod(c, "notrust kod source, %s" % label, reps, pkt, "CRYP")
        c.check("notrust kod source, %s: kod_cryp +1" % label, dl == {"kod_cryp": 1}, show(dl))
    label, pkt = bad_cases()[0]
    reps, dl = srv.ask(pkt, s.plain)
    expect_crypto_nak(c, "source without notrust, %s" % label, reps, pkt)
    c.check("source without notrust, %s: crypto_nak +1" % label, dl == {"crypto_nak": 1},
            show(dl))


def send_and_collect(addr, port, pkt, src, probe_src, expect_reply=True):
    """Send pkt from src; then a plain query from probe_src as a barrier, then every datagram
    waiting for src. With several serving threads (SO_REUSEPORT spreads sources over sockets)
    the barrier may be handled first, so we also wait (bounded) for the reply we expect, or
    a moment for one we do not. Returns (replies, barrier_ok, barrier queries sent)."""
    with ntpg.udp_socket(ntpg.family_of(addr), src) as s:
        s.sendto(pkt, ntpg.sockaddr(addr, port))
        ok, n = False, 3
        for i in range(1, 4):  # a lost barrier is retried, never waited on forever
            if ntpg.query(addr, port, src=probe_src, timeout=0.7):
                ok, n = True, i
                break
        select.select([s], [], [], 2.0 if expect_reply else 0.2)
        return ntpg.recv_all(s), ok, n


class Server:
    """A Daemon plus the counter bookkeeping of one case at a time."""

    def __init__(self, c, d, probe_src):
        self.c, self.d, self.probe = c, d, probe_src
        self.addr, self.port = d.query_addr(), d.port

    def delta(self, fn):
        """Run fn() between two SIGUSR1 counter snapshots; returns (fn's result, nonzero deltas
        of the reason counters, probe queries excluded from `served`)."""
        before = self.d.stats() or {}
        res = fn()
        after = self.d.stats() or {}
        dl = {k: v for k, v in ntpg.stats_delta(before, after).items()
              if v and not k.startswith(("received", "replied", "mon_", "kod_granted", "thread"))}
        return res, dl

    def ask(self, pkt, src, expect_reply=True):
        """One request; returns (list of replies, counter deltas)."""
        (reps, ok, probes), dl = self.delta(lambda: send_and_collect(
            self.addr, self.port, pkt, src, self.probe, expect_reply))
        if not ok:
            self.c.info("barrier query from %s was not answered" % self.probe)
        served = dl.pop("served", 0) - probes  # the barrier queries are served plainly
        if served > 0:
            dl["served"] = served
        return reps, dl


def show(dl):
    return ", ".join("%s %+d" % kv for kv in sorted(dl.items())) or "no counter moved"


def expect_reply_mac(c, label, reps, req, key):
    """One reply: mode 4, origin = our transmit, MAC with key (computed here), no longer than
    the request."""
    if not c.check(label + ": one reply", len(reps) == 1, "%d replies" % len(reps)):
        return None
    raw = reps[0]
    d = ntpg.decode(raw)
    c.check(label + ": mode 4, stratum %d, origin = request transmit" % STRATUM,
            d["mode"] == 4 and d["stratum"] == STRATUM and raw[24:32] == req[40:48],
            "mode %d stratum %d" % (d["mode"], d["stratum"]))
    c.check(label + ": %d octets = request length, key id %d, digest verifies (computed here)"
            % (len(req), key.id), len(raw) == len(req) and mac_verifies(raw, key),
            "got %d octets, trailer %s" % (len(raw), raw[48:].hex()))
    return d


def expect_crypto_nak(c, label, reps, req):
    if not c.check(label + ": one reply", len(reps) == 1, "%d replies" % len(reps)):
        return
    raw = reps[0]
    d = ntpg.decode(raw)
    c.check(label + ": 52-octet crypto-NAK (header + key id 0), not longer than the request",
            len(raw) == 52 and raw[48:] == b"\0" * 4 and len(raw) <= len(req),
            "%d octets (request %d), trailer %s" % (len(raw), len(req), raw[48:].hex()))
    c.check(label + ": crypto-NAK header is a mode 4 reply to this request",
            d["mode"] == 4 and raw[24:32] == req[40:48] and d["stratum"] == STRATUM,
            "mode %d stratum %d" % (d["mode"], d["stratum"]))


def expect_kod(c, label, reps, req, code):
    if not c.check(label + ": one reply", len(reps) == 1, "%d replies" % len(reps)):
        return
    raw = reps[0]
    d = ntpg.decode(raw)
    c.check(label + ": 48-octet %s KoD: LI 3, mode 4, stratum 0, refid %s" % (code, code),
            len(raw) == 48 and d["li"] == 3 and d["mode"] == 4 and d["stratum"] == 0
            and d["refid"] == code.encode(),
            "%d octets LI %d mode %d stratum %d refid %r" % (len(raw), d["li"], d["mode"],
                                                             d["stratum"], d["refid"]))
    c.check(label + ": origin = receive = transmit = request transmit",
            raw[24:32] == raw[32:40] == raw[40:48] == req[40:48])


# ---------------------------------------------------------------------------------------------
# Real clients with keys
# ---------------------------------------------------------------------------------------------

def run_ntpdig_key(addr, keyfile, kid, timeout=2):
    """`ntpdig -d -j -t T -k KEYFILE -a KEYID ADDR` (port 123). -d makes ntpdig say whether the
    reply's MAC verified. Returns dict(offset, stratum, auth_ok, auth_failed, out, err) or
    dict(error=...)."""
    cmd = [ntpg.NTPDIG, "-d", "-j", "-t", str(timeout), "-k", keyfile, "-a", str(kid), addr]
    rc, out, err = ntpg.run_tool(cmd, timeout + 10)
    res = {"cmd": " ".join(cmd), "rc": rc, "err": err.strip(),
           "auth_ok": "MAC verification on reply from %s succeeded" % addr in err,
           "auth_failed": "MAC verification" in err and "failed" in err
           or "packet.trusted" in err}
    j = ntpg.parse_ntpdig_json(out)
    if rc != 0 or j is None:
        res["error"] = "rc=%s out=%r err=%r" % (rc, out.strip()[-200:], err.strip()[-300:])
        return res
    res.update(offset=float(j["offset"]), stratum=int(j["stratum"]))
    return res


def run_chronyd_key(tmp, addr, port, key, src, timeout=10, options="", name="chronyk"):
    """chronyd -Q with a chrony key file holding `key` and `server ... key N`. Returns
    dict(offset, stratum, ...) or dict(error=...)."""
    d = tempfile.mkdtemp(prefix=name + "-", dir=tmp)
    keyfile = os.path.join(d, "chrony.keys")
    ntpg.write_text(keyfile, key.chrony_line() + "\n")
    os.chmod(keyfile, 0o600)
    lines = ["server %s port %d key %d iburst minpoll -2 maxpoll -2%s" % (addr, port, key.id,
                                                                         options),
             "keyfile %s" % keyfile, "pidfile %s/chronyd.pid" % d, "driftfile %s/drift" % d,
             "cmdport 0", "logdir %s" % d, "log measurements", "bindacqaddress %s" % src]
    conf = ntpg.write_text(os.path.join(d, "chrony.conf"), "\n".join(lines) + "\n")
    cmd = [ntpg.CHRONYD, "-Q", "-u", "root", "-t", str(timeout), "-f", conf]
    rc, out, err = ntpg.run_tool(cmd, timeout + 10)
    res = {"cmd": " ".join(cmd), "conf": lines, "rc": rc, "err": err.strip()}
    m = ntpg.CHRONY_OFFSET_RE.search(out + err)
    meas = ntpg.parse_chrony_measurements(ntpg.read_text(os.path.join(d, "measurements.log")),
                                          addr)
    if rc != 0 or not m or not meas:
        res["error"] = "rc=%s measurements=%s stderr=%r" % (rc, bool(meas), err.strip()[-300:])
        return res
    res.update(offset=float(m.group(1)), stratum=meas["stratum"])
    return res


# ---------------------------------------------------------------------------------------------
# The server under test
# ---------------------------------------------------------------------------------------------

K_MD5 = Key(1, "MD5", "Ui4.ve=Gai7|ohDa8;e", "MD5")            # ASCII (19 characters)
K_SHA1 = Key(2, "SHA1", fixed_hex("sha1", 20), "SHA1")
K_SHA256 = Key(3, "SHA256", fixed_hex("sha256", 32), "SHA256")
K_CMAC = Key(4, "AES128CMAC", fixed_hex("cmac", 16), "AES128")
K_UNTRUSTED = Key(5, "SHA1", fixed_hex("untrusted", 20), "SHA1")
K_ADDR = Key(6, "MD5", fixed_hex("addr", 16), "MD5")          # address list: one source only
CLIENT_KEYS = (K_MD5, K_SHA1, K_SHA256, K_CMAC)


class Sources:
    def __init__(self):
        self.plain = ntpg.source_addr(1)      # no restrict entry
        self.probe = ntpg.source_addr(2)      # barrier queries
        self.chrony = ntpg.source_addr(3)
        self.kod = ntpg.source_addr(4)        # restrict kod
        self.notrust = ntpg.source_addr(5)    # restrict notrust
        self.notrust_kod = ntpg.source_addr(6)  # restrict notrust kod
        self.keyaddr = ntpg.source_addr(7)    # the one source K_ADDR may be used from
        self.tshark = ntpg.source_addr(8)
        self.chrony_kod = ntpg.source_addr(9)  # restrict kod, for chronyd -Q


def start_own(d):
    """Start d and make sure the daemon answering is ours: it logged its bind and still runs.
    (Another run of this file with the same NTPG_ADDR_SALT holds the address otherwise: with
    one thread, hence no SO_REUSEPORT, our daemon exits on EADDRINUSE while the readiness
    query is answered by the other one.)"""
    mark = "listening on %s:%d" % (d.query_addr(), d.port)
    return d.start() and bool(ntpg.wait_until(lambda: mark in d.log_text(), 5)) and \
        d.alive() and d.stats() is not None


def main_keys_file(tmp, s):
    lines = ["# ntpd-format keys for test_auth", K_MD5.ntpd_line(), K_SHA1.ntpd_line(),
             K_SHA256.ntpd_line(), K_CMAC.ntpd_line() + "   # RFC 8573",
             K_UNTRUSTED.ntpd_line(), K_ADDR.ntpd_line(s.keyaddr)]
    path = ntpg.write_text(os.path.join(tmp, "server.keys"), "\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


def client_keys_file(tmp, name, keys):
    """ntpdig reads ntpd's format but splits every line into exactly three fields, so its file
    holds no address lists."""
    path = ntpg.write_text(os.path.join(tmp, name), "".join(k.ntpd_line() + "\n" for k in keys))
    os.chmod(path, 0o600)
    return path


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------

def section_ntpdig(c, srv, tmp):
    c.section("ntpdig -k KEYFILE -a KEYID")
    keyfile = client_keys_file(tmp, "ntpdig.keys", CLIENT_KEYS + (K_UNTRUSTED,))
    for key in CLIENT_KEYS:
        label = "ntpdig %s key %d" % (key.kind, key.id)
        tries = []
        for _ in range(3):
            r, dl = srv.delta(lambda: run_ntpdig_key(srv.addr, keyfile, key.id))
            tries.append((r, dl))
            if "error" in r or abs(r["offset"]) < NTPDIG_LIMIT:
                break
        r, dl = tries[-1]
        c.info("%s: %s" % (label, r["cmd"]))
        # ntpdig 1.2.2 (ntp.ntpc.mac) sends the whole 32-octet SHA-256 digest (a 36-octet MAC,
        # an 84-octet request); docs/authentication.md says ntpgated accepts it and answers
        # with a whole digest, so a failure here is a failure, never a skip.
        if not c.check(label + " gets time", "error" not in r,
                       why="%s; %s" % (r.get("error"), show(dl))):
            continue
        c.check(label + ": ntpdig says the reply's MAC verified", r["auth_ok"]
                and not r["auth_failed"], why=r["err"][-300:])
        c.check(label + ": offset within 5 ms, stratum %d" % STRATUM,
                abs(r["offset"]) < NTPDIG_LIMIT and r["stratum"] == STRATUM,
                "offsets %s stratum %s" % (["%+.6f" % t[0].get("offset", 0) for t in tries],
                                           r["stratum"]))
        c.check(label + ": served_auth +1, no crypto_nak", dl.get("served_auth") == 1
                and not dl.get("crypto_nak"), show(dl))

    wrong = client_keys_file(tmp, "ntpdig-wrong.keys", [K_SHA1.with_text(fixed_hex("x", 20))])
    for kf, kid, what in ((wrong, K_SHA1.id, "a wrong secret"),
                          (keyfile, K_UNTRUSTED.id, "an untrusted key")):
        label = "ntpdig with %s (key %d)" % (what, kid)
        r, dl = srv.delta(lambda: run_ntpdig_key(srv.addr, kf, kid, timeout=1))
        c.check(label + ": no time", "error" in r, "offset %s" % r.get("offset"))
        c.check(label + ": the server sent a crypto-NAK (crypto_nak +1)",
                dl.get("crypto_nak") == 1 and not dl.get("served_auth"), show(dl))
        if "packet.trusted" in r["err"]:
            c.info("ntpdig 1.2.2 crashes on a reply whose MAC fails (AttributeError: 'bytes' "
                   "object has no attribute 'trusted'): its own bug, it prints no time")


def section_chrony(c, srv, tmp, s):
    c.section("chronyd -Q with a chrony keyfile and `key N`")
    cases = [(K_MD5, ""), (K_SHA1, ""), (K_SHA256, " version 4"), (K_CMAC, "")]
    for key, opt in cases:
        label = "chronyd -Q %s key %d%s" % (key.chrony_type, key.id, opt)
        tries = []
        for _ in range(3):
            r, dl = srv.delta(lambda: run_chronyd_key(tmp, srv.addr, srv.port, key, s.chrony,
                                                      options=opt))
            tries.append((r, dl))
            if "error" not in r and abs(r["offset"]) < LIMIT:
                break
        r, dl = tries[-1]
        c.info("%s: %s | %s" % (label, r["cmd"], " | ".join(r["conf"][:2])))
        if not c.check(label + " gets time", "error" not in r, r.get("error")):
            continue
        c.check(label + ": offset within 1 ms, stratum %d" % STRATUM,
                abs(r["offset"]) < LIMIT and r["stratum"] == STRATUM,
                "offsets %s stratum %s" % (["%+.6f" % t[0].get("offset", 0) for t in tries],
                                           r["stratum"]))
        c.check(label + ": every request served_auth, no crypto_nak",
                dl.get("served_auth", 0) >= 1 and not dl.get("crypto_nak")
                and not dl.get("dropped_trailer"), show(dl))

    # chrony's default for a key with a digest over 20 octets is NTPv3 with the whole digest
    label = "chronyd -Q SHA256 key 3 (chrony's default: NTPv3, 32-octet digest)"
    r, dl = srv.delta(lambda: run_chronyd_key(tmp, srv.addr, srv.port, K_SHA256, s.chrony,
                                              timeout=3))
    # docs/authentication.md says this works (the whole digest is accepted where the trailer
    # cannot be extension fields, and the reply carries a whole digest): check it does.
    if c.check(label + " gets time", "error" not in r, why="%s; %s" % (r.get("error"), show(dl))):
        c.check(label + ": offset within 1 ms, stratum %d" % STRATUM,
                abs(r["offset"]) < LIMIT and r["stratum"] == STRATUM,
                "offset %+.6f stratum %s" % (r["offset"], r["stratum"]))
        c.check(label + ": every request served_auth, no crypto_nak, no dropped_trailer",
                dl.get("served_auth", 0) >= 1 and not dl.get("crypto_nak")
                and not dl.get("dropped_trailer"), show(dl))

    for key in (K_SHA1, K_CMAC):
        bad = key.with_text(fixed_hex("wrong " + key.kind, len(key.secret)))
        label = "chronyd -Q %s key %d with a wrong secret" % (key.chrony_type, key.id)
        r, dl = srv.delta(lambda: run_chronyd_key(tmp, srv.addr, srv.port, bad, s.chrony,
                                                  timeout=3))
        c.check(label + ": no usable measurement", "error" in r,
                "offset %s" % r.get("offset"))
        c.check(label + ": every request got a crypto-NAK, none was served",
                dl.get("crypto_nak", 0) >= 1 and not dl.get("served_auth"), show(dl))
    bad = K_SHA1.with_text(fixed_hex("wrong kod", 20))
    label = "chronyd -Q SHA1 wrong secret from a `kod` source"
    r, dl = srv.delta(lambda: run_chronyd_key(tmp, srv.addr, srv.port, bad, s.chrony_kod,
                                              timeout=3))
    c.check(label + ": no usable measurement", "error" in r, "offset %s" % r.get("offset"))
    c.check(label + ": CRYP KoDs sent (kod_cryp), none served", dl.get("kod_cryp", 0) >= 1
            and not dl.get("served_auth") and not dl.get("crypto_nak"), show(dl))


def section_raw(c, srv, s):
    c.section("hand-built requests")
    req = ntpg.client_request()
    for key in (K_MD5, K_SHA1, K_SHA256, K_CMAC):
        label = "%s request (key %d)" % (key.kind, key.id)
        pkt = sign(req, key)
        reps, dl = srv.ask(pkt, s.plain)
        expect_reply_mac(c, label, reps, pkt, key)
        c.check(label + ": served_auth +1", dl == {"served_auth": 1}, show(dl))

    pkt = sign(ntpg.client_request(vn=3), K_MD5)
    reps, dl = srv.ask(pkt, s.plain)
    d = expect_reply_mac(c, "NTPv3 MD5 request", reps, pkt, K_MD5)
    c.check("NTPv3 MD5 request: reply is version 3, served_auth +1",
            d is not None and d["vn"] == 3 and dl == {"served_auth": 1}, show(dl))

    good = sign(ntpg.client_request(), K_MD5)
    flipped = good[:-1] + bytes([good[-1] ^ 1])
    nak_cases = [
        ("MD5 request with a wrong digest", flipped, s.plain),
        ("request with unknown key id 99", sign(ntpg.client_request(), K_MD5, kid=99), s.plain),
        ("request with key id 0 and a digest", sign(ntpg.client_request(), K_MD5, kid=0),
         s.plain),
        ("request with untrusted key 5 (digest right)", sign(ntpg.client_request(),
                                                              K_UNTRUSTED), s.plain),
        ("MD5 key 1 with a 20-octet digest (wrong length for MD5)",
         ntpg.client_request() + struct.pack("!I", 1) + b"\x55" * 20, s.plain),
        ("key 6 from a source not on its address list", sign(ntpg.client_request(), K_ADDR),
         s.plain),
    ]  # a notrust source's bad MAC gets no crypto-NAK: section_notrust_bad_mac
    for label, pkt, src in nak_cases:
        if pkt is flipped:  # a fresh nonce per case, same corruption
            g = sign(ntpg.client_request(), K_MD5)
            pkt = g[:-1] + bytes([g[-1] ^ 1])
        reps, dl = srv.ask(pkt, src)
        expect_crypto_nak(c, label, reps, pkt)
        c.check(label + ": crypto_nak +1", dl == {"crypto_nak": 1}, show(dl))

    pkt = sign(ntpg.client_request(), K_ADDR)
    reps, dl = srv.ask(pkt, s.keyaddr)
    expect_reply_mac(c, "key 6 from its listed source", reps, pkt, K_ADDR)
    c.check("key 6 from its listed source: served_auth +1", dl == {"served_auth": 1}, show(dl))

    g = sign(ntpg.client_request(), K_SHA1)
    pkt = g[:-1] + bytes([g[-1] ^ 0x80])
    reps, dl = srv.ask(pkt, s.kod)
    expect_kod(c, "`kod` source, SHA1 wrong digest", reps, pkt, "CRYP")
    c.check("`kod` source, wrong digest: kod_cryp +1", dl == {"kod_cryp": 1}, show(dl))
    pkt = sign(ntpg.client_request(), K_SHA1)
    reps, dl = srv.ask(pkt, s.kod)
    expect_reply_mac(c, "`kod` source, good SHA1 MAC", reps, pkt, K_SHA1)

    pkt = ntpg.client_request()
    reps, dl = srv.ask(pkt, s.notrust, expect_reply=False)
    c.check("notrust source, no MAC: no reply", reps == [], "%d replies" % len(reps))
    c.check("notrust source, no MAC: dropped_notrust +1", dl == {"dropped_notrust": 1},
            show(dl))
    pkt = sign(ntpg.client_request(), K_CMAC)
    reps, dl = srv.ask(pkt, s.notrust)
    expect_reply_mac(c, "notrust source, good CMAC", reps, pkt, K_CMAC)
    c.check("notrust source, good CMAC: served_auth +1", dl == {"served_auth": 1}, show(dl))

    pkt = ntpg.client_request()
    reps, dl = srv.ask(pkt, s.notrust_kod)
    expect_kod(c, "notrust kod source, no MAC", reps, pkt, "DENY")
    c.check("notrust kod source, no MAC: kod_deny +1", dl == {"kod_deny": 1}, show(dl))
    pkt = sign(ntpg.client_request(), K_MD5)
    reps, dl = srv.ask(pkt, s.notrust_kod)
    expect_reply_mac(c, "notrust kod source, good MD5", reps, pkt, K_MD5)
    c.check("notrust kod source, good MD5: served_auth +1", dl == {"served_auth": 1}, show(dl))


def section_tshark(c, srv, tmp, s):
    c.section("tshark decodes MACed replies")
    keys = (K_MD5, K_SHA1, K_CMAC)
    cap = ntpg.Capture(tmp, "udp and host %s and host %s" % (srv.addr, s.tshark),
                       count=2 * len(keys), duration=10, name="auth")
    c.info("tshark: %s" % cap.cmd)
    if not c.check("tshark capture started", cap.wait_started(),
                   why=ntpg.read_text(cap.err)[-300:]):
        return
    sent = []
    for key in keys:
        pkt = sign(ntpg.client_request(), key)
        r = ntpg.query(srv.addr, srv.port, src=s.tshark, packet=pkt, timeout=2.0)
        sent.append((key, r["raw"] if r else None))
    cap.wait_done()
    dec = ntpg.tshark_decode(cap.pcap)
    c.check("tshark: %d frames captured" % (2 * len(keys)), len(dec["frames"]) == 2 * len(keys),
            "%d frames" % len(dec["frames"]), why=dec["stderr"][-200:])
    c.check("tshark: no malformed packets or expert warnings", not dec["problems"],
            "; ".join(dec["problems"]))
    p = subprocess.run([ntpg.TSHARK, "-r", cap.pcap, "-Y", "ntp.flags.mode == 4", "-T",
                        "fields", "-e", "ntp.keyid", "-e", "ntp.mac"], capture_output=True,
                       timeout=60)
    rows = [ln.split("\t") for ln in p.stdout.decode().splitlines()]
    for i, (key, raw) in enumerate(sent):
        label = "tshark: %s reply" % key.kind
        if not c.check(label + " captured and MACed", raw is not None and i < len(rows)
                       and mac_verifies(raw, key)):
            continue
        kid, mac = (rows[i] + ["", ""])[:2]
        c.check(label + ": key id %d and MAC decoded as sent" % key.id,
                kid.replace(":", "") == "%08x" % key.id
                and mac.replace(":", "") == raw[52:].hex(), "keyid %r mac %r" % (kid, mac))


def reload_keys(c, d, path, text, label):
    """Rewrite the keys file, SIGHUP, wait for the verdict in the log. Returns the new log text."""
    ntpg.write_text(path, text)
    os.chmod(path, 0o600)
    mark = len(d.log_text())
    d.send_signal(signal.SIGHUP)
    got = ntpg.wait_until(lambda: ("configuration reloaded" in d.log_text()[mark:]
                                   or "reload failed" in d.log_text()[mark:]), 10, 0.02)
    c.check(label + ": the daemon logged the reload's outcome", got, why=d.log_diag(mark))
    return d.log_text()[mark:]


def section_reload(c, tmp, s):
    c.section("SIGHUP reloads the keys file")
    addr = ntpg.server_addr(2)
    path = os.path.join(tmp, "reload.keys")
    old = Key(7, "SHA1", fixed_hex("reload old", 20))
    new = old.with_text(fixed_hex("reload new", 20))
    ntpg.write_text(path, old.ntpd_line() + "\n")
    os.chmod(path, 0o600)
    # two serving threads: the reload swaps the keys under both
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=STRATUM, name="reload",
                    extra=["keys %s" % path, "trustedkey 7 8", "threads 2"])
    if not c.check("reload daemon answers on %s port 123" % addr, start_own(d),
                   why="rc %s; %s" % (d.rc, d.log_diag())):
        return
    srv = Server(c, d, s.probe)

    def served_with(key, label):
        pkt = sign(ntpg.client_request(), key)
        reps, dl = srv.ask(pkt, s.plain)
        expect_reply_mac(c, label, reps, pkt, key)
        c.check(label + ": served_auth +1", dl == {"served_auth": 1}, show(dl))

    def refused(key, label):
        pkt = sign(ntpg.client_request(), key)
        reps, dl = srv.ask(pkt, s.plain)
        expect_crypto_nak(c, label, reps, pkt)
        c.check(label + ": crypto_nak +1", dl == {"crypto_nak": 1}, show(dl))

    served_with(old, "before reload, the old secret")
    log = reload_keys(c, d, path, new.ntpd_line() + "\n", "new secret for key 7")
    c.check("new secret: reload succeeded", "configuration reloaded" in log, why=log[-300:])
    refused(old, "after reload, the old secret")
    served_with(new, "after reload, the new secret")
    keyfile = client_keys_file(tmp, "ntpdig-reload.keys", [new])
    r = run_ntpdig_key(addr, keyfile, new.id)
    c.check("after reload, ntpdig with the new secret gets authenticated time",
            "error" not in r and r["auth_ok"], r.get("error", ""))

    newer = new.with_text(fixed_hex("reload newer", 20))
    k8 = Key(8, "AES128CMAC", fixed_hex("reload k8", 16))
    bad_type_secret = fixed_hex("reload bad type", 20)
    no_type_secret = fixed_hex("reload no type", 16)
    lines = ["# line 1", newer.ntpd_line(), k8.ntpd_line(),
             "9 SHA-512 %s" % bad_type_secret,         # line 4: a type nobody accepts
             "10 %s" % no_type_secret]                  # line 5: chrony-style, no type
    log = reload_keys(c, d, path, "\n".join(lines) + "\n", "bad keys file")
    full = d.all_output()
    for n in (4, 5):
        c.check("bad keys file: error logged as %s:%d" % (os.path.basename(path), n),
                "%s:%d:" % (path, n) in log, why=log[-400:])
    c.check("bad keys file: reload refused, old configuration kept",
            "reload failed" in log and "configuration reloaded" not in log, why=log[-300:])
    leaked = [k for k in (old.text, new.text, newer.text, k8.text, bad_type_secret,
                          no_type_secret) if k.lower() in full.lower()]
    c.check("no key material in the log or on stdout/stderr", not leaked,
            "%d secret(s) found" % len(leaked))
    c.check("daemon still running after a bad keys file", d.alive(), why="rc %s" % d.rc)
    served_with(new, "after the bad reload, the secret in force")
    refused(newer, "after the bad reload, the rejected file's secret")
    refused(k8, "after the bad reload, key 8 (only in the rejected file)")

    rc, took = d.stop()
    c.check("reload daemon: SIGTERM exits 0", rc == 0, "rc %s after %.2f s" % (rc, took))
    rep = d.sanitizer_report()
    c.check("reload daemon: no sanitizer report", not rep, rep)


def main(c, tmp):
    if ntpg.STANDIN:
        c.skip("authentication", "ntpgated only (keys, counters, restrict notrust)")
        return
    c.check("CMAC helper: RFC 4493 example 2", cmac(
        bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"),
        bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")).hex()
        == "070a16b46b4d4144f79bdd9dd04a287c")
    s = Sources()
    addr = ntpg.server_addr(1)
    keys = main_keys_file(tmp, s)
    # one serving thread: one socket, so the bind is exclusive (start_own) and the counter
    # deltas of one case cannot include a late packet of the case before
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=STRATUM, name="auth", extra=[
        "keys %s" % keys, "trustedkey 1 2 3 4 6",
        "restrict %s kod" % s.kod, "restrict %s kod" % s.chrony_kod,
        "restrict %s notrust" % s.notrust, "restrict %s notrust kod" % s.notrust_kod,
        "discard kodlimit 1000", "threads 1"])
    if not c.check("daemon with keys answers on %s port 123" % addr, start_own(d),
                   why="rc %s; %s" % (d.rc, d.log_diag())):
        return
    srv = Server(c, d, s.probe)
    t0 = time.monotonic()
    section_raw(c, srv, s)
    section_notrust_bad_mac(c, srv, s)
    section_ntpdig(c, srv, tmp)
    section_chrony(c, srv, tmp, s)
    section_tshark(c, srv, tmp, s)
    c.info("main daemon sections took %.1f s" % (time.monotonic() - t0))
    st = d.stats() or {}
    c.check("no reply was ever larger than its request (blocked_larger 0), no sign failures",
            st.get("blocked_larger") == 0 and st.get("dropped_sign_failed") == 0,
            "blocked_larger %s dropped_sign_failed %s" % (st.get("blocked_larger"),
                                                          st.get("dropped_sign_failed")))
    c.check("no key material in the main daemon's log", not any(
        k.text.lower() in d.all_output().lower() for k in CLIENT_KEYS + (K_UNTRUSTED, K_ADDR)))
    rc, took = d.stop()
    c.check("main daemon: SIGTERM exits 0", rc == 0, "rc %s after %.2f s" % (rc, took))
    rep = d.sanitizer_report()
    c.check("main daemon: no sanitizer report", not rep, rep)
    section_reload(c, tmp, s)


if __name__ == "__main__":
    ntpg.run(main)
