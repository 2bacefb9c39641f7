"""Mode 6 control (issue 5) with Debian's real ntpsec ntpq, unmodified, on loopback:

  - `ntpq -c rv`: version, stratum, refid, leap as the time replies carry them, from
    127.0.0.1 (exempt from the amplification bound) and from a 127.78.x source (bounded);
  - `ntpq -p`: no associations yet, but no error and no traceback;
  - `ntpq -c mrulist`: after ntpdig, ntplib and raw time queries from several 127.78.x
    sources, each source is listed with its packet count, mode and version (from 127.0.0.1
    and through the nonce exchange from a bounded source);
  - `ntpq -c mrulist` over 5,000 sources (more than one request reads, so ntpq pages
    through the walk nonces): every source once with its count; `mincount=2` lists only
    the 30 that sent twice; `recent=100` lists 100 (issue 13 D);
  - `ntpq -c sysstats`: packets received / processed / control requests plausible against
    the daemon's own counters (SIGUSR1);
  - `ntpq -k KEYS -a 1 -c reslist`: the restrict entries of the config file, and later the
    ones added at runtime;
  - `ntpq -k KEYS -a 1 -c ':config restrict NET mask 255.255.255.0 noserve kod'`: a client
    of NET is then denied (DENY KoD, ntpdig says KoD); `:config unrestrict` (and
    `delrestrict` for a host entry) frees it again, all in the same process;
  - refusals: a `noquery` source gets nothing (ntpq times out); `:config` from a `nomodify`
    source, without a MAC, with a trusted key that is not the control key, with a bad digest,
    and of a directive that names a file (`logfile`) are refused and change nothing;
  - amplification: every opcode 0..31 and READVAR with long name lists, READ_MRU without a
    nonce, REQ_NONCE, unauthenticated from a 127.78.x source: a table of octets out / octets
    in, each within max(480, 3 x request); error replies no larger than the request; READ_MRU
    without a valid nonce gets nothing;
  - bug 1331: mode 6 responses, errors and fragments (R/E/M, offset != 0) and mode 7 requests
    and responses, from 127.0.0.1 port 123 and from other sources, get no reply.

ntpq is the unpacked ntpsec one (.peers/root/usr/bin/ntpq, run by /usr/bin/python3 with the
system python3-ntp module). ntpq, ntpdig and ntplib always send from the kernel's choice of
source (127.0.0.1 on loopback); to send from a chosen 127.78.x address they run under
BIND_SHIM, which only binds each IPv4 UDP socket the program creates to that address before
the program uses it: everything on the wire is still the program's own.

A missing reply is only called missing after the daemon's counters show it handled the
datagram (SIGUSR1; counters are read in an exclusive section, after the control replies of
every finished batch went out), so no check waits on a guess.

Helpers here (mode 6 codec, MACs, ntpq runner, Box) are also used by test_cve.py."""

import hashlib
import json
import os
import re
import select
import signal
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

NTPQ = os.path.join(ntpg.PEERS, "usr", "bin", "ntpq")
STRATUM = 7
BASE = ntpg.SALT * 32
# Keys for the daemon and ntpq (ntpd format; 40 hex digits = 20 octets). Test keys only.
KEY1 = (1, "SHA1", hashlib.sha1(b"ntpgate test_control key 1").hexdigest())
KEY2 = (2, "SHA1", hashlib.sha1(b"ntpgate test_control key 2").hexdigest())
CTL_FLOOR = 480  # 12-octet header + 468 data octets: one full datagram
CTL_FACTOR = 3

# Run a Python program (argv[2], with argv[3:]) with every IPv4 UDP socket it creates bound
# to argv[1] first; nothing else changes, so every datagram is the program's own.
BIND_SHIM = r"""
import runpy, socket, sys
src = sys.argv[1]
real = socket.socket
class Bound(real):
    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        real.__init__(self, family, type, proto, fileno)
        if fileno is None and family == socket.AF_INET and type & 0xF == socket.SOCK_DGRAM:
            self.bind((src, 0))
socket.socket = Bound
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

NTPLIB_QUERIES = r"""
import json, ntplib, sys
n, version = int(sys.argv[2]), int(sys.argv[3])
out = []
for _ in range(n):
    r = ntplib.NTPClient().request(sys.argv[1], version=version, port=123, timeout=2)
    out.append({"stratum": r.stratum, "version": r.version})
print(json.dumps(out))
"""

ERR_NAMES = {0: "unspec", 1: "permission", 2: "badfmt", 3: "badop", 4: "badassoc",
             5: "unknownvar", 6: "badvalue", 7: "adminprohibit"}


# ---------------------------------------------------------------------------------------------
# Mode 6 codec and MACs
# ---------------------------------------------------------------------------------------------

def key_secret(key):
    """The octets a key text stands for (ntpd: up to 20 characters ASCII, else hex)."""
    text = key[2]
    return text.encode() if len(text) <= 20 else bytes.fromhex(text)


def mac(key, data):
    kid, kind, _ = key
    return struct.pack("!I", kid) + hashlib.new(kind.lower(), key_secret(key) + data).digest()


def ctl(opcode, data=b"", seq=1, assoc=0, vn=2, r=False, e=False, m=False, offset=0,
        count=None, status=0, pad=True, key=None, bad_digest=False):
    """A mode 6 datagram. count None = len(data); pad: to 4 octets (ntpq); key (id, type,
    text): padded to 8 octets and MACed as ntpq does; bad_digest flips the digest's last bit."""
    if isinstance(data, str):
        data = data.encode()
    b1 = (0x80 if r else 0) | (0x40 if e else 0) | (0x20 if m else 0) | (opcode & 0x1F)
    pkt = struct.pack("!BBHHHHH", ((vn & 7) << 3) | 6, b1, seq & 0xFFFF, status, assoc, offset,
                      len(data) if count is None else count) + data
    if pad or key:
        pkt += b"\0" * (-len(pkt) % 4)
    if key:
        pkt += b"\0" * (-len(pkt) % 8)
        tr = mac(key, pkt)
        if bad_digest:
            tr = tr[:-1] + bytes([tr[-1] ^ 1])
        pkt += tr
    return pkt


def ctl_decode(raw):
    """A mode 6 reply: dict(r, e, m, opcode, seq, status, err, assoc, offset, count, data,
    trailer) or None if it is not a mode 6 header."""
    if len(raw) < 12 or raw[0] & 7 != 6:
        return None
    b1 = raw[1]
    seq, status, assoc, offset, count = struct.unpack("!HHHHH", raw[2:12])
    return {"r": bool(b1 & 0x80), "e": bool(b1 & 0x40), "m": bool(b1 & 0x20),
            "opcode": b1 & 0x1F, "seq": seq, "status": status, "err": status >> 8,
            "assoc": assoc, "offset": offset, "count": count, "data": raw[12:12 + count],
            "trailer": raw[12 + count:], "len": len(raw)}


def describe(replies):
    """A short text for a list of raw replies."""
    if not replies:
        return "no reply"
    d = ctl_decode(replies[0])
    if d is None:
        return "%d datagram(s), first not mode 6 (%d octets)" % (len(replies), len(replies[0]))
    if d["e"]:
        return "error %d (%s), %d octets" % (d["err"], ERR_NAMES.get(d["err"], "?"), d["len"])
    return "%d datagram(s), %d octets" % (len(replies), sum(len(x) for x in replies))


def is_error(replies, code=None, opcode=None):
    if len(replies) != 1:
        return False
    d = ctl_decode(replies[0])
    return bool(d) and d["r"] and d["e"] and (code is None or d["err"] == code) and \
        (opcode is None or d["opcode"] == opcode)


def reply_text(replies):
    """The data of a (possibly fragmented) mode 6 answer, fragments put in offset order."""
    frags = sorted((ctl_decode(x) for x in replies if ctl_decode(x)), key=lambda d: d["offset"])
    return b"".join(d["data"] for d in frags).decode(errors="replace")


def bound(reqlen):
    return max(CTL_FLOOR, CTL_FACTOR * reqlen)


# ---------------------------------------------------------------------------------------------
# The daemon with counter bookkeeping and exchanges that wait for the counters
# ---------------------------------------------------------------------------------------------

def handled(st):
    """Datagrams the daemon finished with: every per-reason outcome (time path and control
    path) counts each datagram once; control_requests is a hand-over, not an outcome."""
    return sum(v for k, v in st.items()
               if k.startswith(("ctl_", "dropped_", "served", "kod_")) and
               k not in ("kod_granted", "kod_refused")) + st.get("crypto_nak", 0)


OUTCOMES = ("ctl_", "dropped_", "served", "kod_", "crypto_nak", "control_requests")
# Mode 6 requests in flight at once: a serving thread keeps at most 32 (WRK_MAX_CONTROL) per
# wakeup and counts the rest as dropped_ctl_limited, so a slow (sanitizer) daemon that finds
# more than 32 queued would drop some; the per-source (64) and total (200/s) limits are far.
CHUNK = 16


class Box:
    """One ntpgated plus what the checks need around it: counter deltas, mode 6 exchanges that
    wait until the counters show every datagram handled, a record of every reply size."""

    def __init__(self, c, d, probe):
        self.c, self.d, self.probe = c, d, probe
        self.addr, self.port = d.query_addr(), d.port
        self.pid = None
        self.sizes = []  # (label, request octets, [reply datagrams], "unauth"/"auth"/"nonce")

    def start(self):
        ok = self.d.start()
        self.c.check("%s: daemon answers on %s port %d" % (self.d.name, self.addr, self.port),
                     ok, why="rc %s; stderr %r" % (self.d.rc, self.d.stderr_text()[-400:]))
        self.pid = self.d.pid
        return ok

    def stats(self):
        st = self.d.stats()
        if st is None:
            self.c.check("%s: counters readable (SIGUSR1)" % self.d.name, False,
                         why=self.d.log_diag())
            return {}
        return st

    def settle(self, before, n, timeout=4.0):
        """Read counters until n more datagrams than in `before` were handled (bounded)."""
        st = self.stats()
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            if not st or handled(st) - handled(before) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.05)
            st = self.stats()
        return st

    def sock(self, src, port=0):
        s = ntpg.bind_udp(src, port)
        if s is None:
            raise OSError("cannot bind %s:%d" % (src, port))
        return s

    def exchange(self, items, label="", kind="unauth", wait=2.0, chunk=CHUNK):
        """items: list of (src or bound socket, datagram). Each is sent from its own socket
        (given sockets are reused, not closed), `chunk` at a time; after each chunk the
        counters are read until the daemon handled them all, then every datagram each socket
        got is collected. Returns (replies per item, counter delta over all chunks)."""
        before = first = self.stats()
        out = []
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            socks = []
            for src, pkt in part:
                own = not hasattr(src, "sendto")
                s = self.sock(src) if own else src
                s.sendto(pkt, ntpg.sockaddr(self.addr, self.port))
                socks.append((s, own))
            before = self.settle(before, len(part), timeout=wait + 2)
            for (s, own), (_, pkt) in zip(socks, part):
                select.select([s], [], [], 0.02)
                got = ntpg.recv_all(s)
                out.append(got)
                self.sizes.append((label, len(pkt), got, kind))
                if own:
                    s.close()
        dl = {k: v for k, v in ntpg.stats_delta(first, before).items()
              if v and k.startswith(OUTCOMES)}
        return out, dl

    def ask(self, sock, pkt, timeout=2.0):
        """Send one request on a bound socket and wait for the first reply (bounded), then
        for the rest of a fragmented answer. For answers that must come (REQ_NONCE)."""
        sock.sendto(pkt, ntpg.sockaddr(self.addr, self.port))
        got = []
        self.sizes.append(("ask opcode %d" % (pkt[1] & 0x1F), len(pkt), got, "unauth"))
        deadline = time.monotonic() + timeout
        for _ in range(64):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                break
            got += ntpg.recv_all(sock)
            last = ctl_decode(got[-1]) if got else None
            if last is None or not last["m"]:
                break
            deadline = min(deadline, time.monotonic() + 0.3)
        return got

    def nonce(self, sock):
        """REQ_NONCE on this socket: the nonce text, or None."""
        got = self.ask(sock, ctl(12))
        m = re.search(r"nonce=([0-9a-fA-F]+)", reply_text(got)) if got else None
        return m.group(1) if m else None

    def alive_and_serving(self, label):
        """After a group: the same process is up and answers a plain time query."""
        alive = self.d.alive() and self.d.pid == self.pid
        r = ntpg.query(self.addr, self.port, src=self.probe, timeout=2.0) if alive else None
        return self.c.check("%s: daemon alive (same pid %s) and answers a time query" % (
            label, self.pid), alive and r is not None and r["reply"]["mode"] == 4,
            "alive %s, reply %s" % (alive, "yes" if r else "none"),
            why=self.d.sanitizer_report() or self.d.stderr_text()[-300:])

    def stop(self):
        rc, took = self.d.stop()
        self.c.check("%s: SIGTERM exits 0" % self.d.name, rc == 0, "rc %s after %.2f s" % (
            rc, took))
        rep = self.d.sanitizer_report()
        self.c.check("%s: no sanitizer report" % self.d.name, not rep, rep)


def show(dl):
    return ", ".join("%s %+d" % kv for kv in sorted(dl.items())) or "no counter moved"


# ---------------------------------------------------------------------------------------------
# Real clients
# ---------------------------------------------------------------------------------------------

def write_keys(tmp, keys=(KEY1, KEY2)):
    path = os.path.join(tmp, "ntp.keys")
    ntpg.write_text(path, "".join("%d %s %s\n" % k for k in keys))
    os.chmod(path, 0o600)
    return path


def bound_argv(src, argv):
    """argv of a Python program run with its sockets bound to src (None: unchanged)."""
    if src is None:
        return [ntpg.PYTHON] + argv
    return [ntpg.PYTHON, "-c", BIND_SHIM, src] + argv


def run_ntpq(addr, cmds, src=None, keyfile=None, keyid=None, timeout_ms=None, limit=20):
    """The real ntpq with the given -c commands; returns (rc, stdout, stderr, command text).

    Always -n: ntpq otherwise looks every address up through the host's resolver, which on a
    machine with an unreachable name server costs about 50 ms per mrulist row (5,000 rows did
    not finish in 60 s) and makes the listing a test of the resolver, not of the daemon."""
    argv = [NTPQ, "-n"]
    if keyfile:
        argv += ["-k", keyfile, "-a", str(keyid)]
    if timeout_ms:
        argv += ["-c", "timeout %d" % timeout_ms]
    for cmd in cmds:
        argv += ["-c", cmd]
    argv.append(addr)
    rc, out, err = ntpg.run_tool(bound_argv(src, argv), limit)
    text = "ntpq " + " ".join(("'%s'" % a if " " in a else a) for a in argv[1:])
    return rc, out, err, text + ("" if src is None else "  (from %s)" % src)


def run_ntpdig_from(src, addr, timeout=2):
    rc, out, err = ntpg.run_tool(bound_argv(src, [ntpg.NTPDIG, "-j", "-t", str(timeout),
                                                  addr]), timeout + 10)
    j = ntpg.parse_ntpdig_json(out)
    return {"rc": rc, "json": j, "err": err.strip()[-300:], "out": out.strip()[-300:]}


def run_ntplib_from(tmp, src, addr, n, version):
    path = ntpg.write_text(os.path.join(tmp, "ntplib_queries.py"), NTPLIB_QUERIES)
    rc, out, err = ntpg.run_tool(bound_argv(src, [path, addr, str(n), str(version)]), 20)
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "rc=%s err=%r" % (rc, err.strip()[-300:])}


MRU_LINE = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+[0-9a-f]+\s+\S\s+(\d)\s+(\d)\s+(\d+)\s+\S+\s+\S+\s+"
                      r"(\d+)\s+(\S+)\s*$")


def parse_mrulist(text):
    """{address: (mode, version, count, port)} from ntpq's mrulist table."""
    out = {}
    for line in text.splitlines():
        m = MRU_LINE.match(line)
        if m:
            out[m.group(5)] = tuple(int(m.group(i)) for i in (1, 2, 3, 4))
    return out


def parse_reslist(text):
    """[(address/prefix, frozenset of flags)] from ntpq's reslist output."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = re.match(r"^\s*(\d+)\s+(\S+/\d+)\s*$", line)
        if m:
            flags = lines[i + 1].split() if i + 1 < len(lines) else []
            out.append((m.group(2), frozenset(flags)))
    return out


def refid_forms(refid):
    """How ntpq may print a refid: text, or a dotted quad (strata 2..15, ntpsec style)."""
    return {ntpg.refid_text(refid), ".".join(str(b) for b in refid)}


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------

def src(k):
    return ntpg.source_addr(k)


# Networks changed at runtime: outside the 127.78.<test> ranges of every test file (those are
# 1..5 and 16..215), one per build so the plain and the sanitizer runs never meet.
def cfg_net():
    return "127.78.%d" % (240 + ntpg.SALT)


NOMODIFY_K, NOQUERY_K, AMP_K, AMP2_K, LOOP_K, PROBE_K = 9, 10, 12, 13, 14, 31


def section_rv(c, box):
    c.section("ntpq -c rv (system variables)")
    raw = ntpg.query(box.addr, 123, src=box.probe, timeout=2.0)
    c.check("a raw time query is answered (for comparison)", raw is not None)
    want_refid = raw["reply"]["refid"] if raw else b"LOCL"
    for label, source in (("from 127.0.0.1 (exempt)", None),
                          ("from %s (bounded)" % src(5), src(5))):
        rc, out, err, cmd = run_ntpq(box.addr, ["rv"], src=source)
        c.info(cmd)
        v = ntpg.parse_vars(out)
        c.check("rv %s: exits 0, no traceback" % label, rc == 0 and "Traceback" not in err,
                "rc %s err %r" % (rc, err[-200:]))
        c.check("rv %s: stratum=%d" % (label, STRATUM), v.get("stratum") == str(STRATUM),
                v.get("stratum"))
        c.check("rv %s: version names ntpgated" % label, "ntpgated" in v.get("version", ""),
                v.get("version"))
        c.check("rv %s: refid is the time replies' (%s)" % (label, ntpg.refid_text(want_refid)),
                v.get("refid") in refid_forms(want_refid), v.get("refid"))
        c.check("rv %s: leap=00, precision, rootdisp, reftime, clock present" % label,
                v.get("leap") == "00" and all(k in v for k in ("precision", "rootdisp",
                                                               "reftime", "clock")),
                "leap %s; %d variables" % (v.get("leap"), len(v)))


def section_peers(c, box):
    c.section("ntpq -p (no associations yet)")
    rc, out, err, cmd = run_ntpq(box.addr, ["peers"])
    c.info(cmd + " -> " + (out.strip() or err.strip())[:120])
    c.check("ntpq -p exits 0 without a traceback or a server error",
            rc == 0 and "Traceback" not in err and "***Server error" not in err,
            "rc %s out %r err %r" % (rc, out[-120:], err[-200:]))
    c.check("ntpq -p: 'No association IDs returned' or a peers table",
            "No association IDs returned" in out + err or "remote" in out, out[-120:])


def section_mrulist(c, box, tmp):
    c.section("ntpq -c mrulist after time queries from several 127.78 sources")
    want = {}
    for k, n in ((1, 2), (2, 1)):  # ntpdig, one datagram per run
        for _ in range(n):
            r = run_ntpdig_from(src(k), box.addr)
            c.check("ntpdig from %s answered, stratum %d" % (src(k), STRATUM),
                    r["json"] and r["json"]["stratum"] == STRATUM, r["err"] or r["out"])
        want[src(k)] = (3, 4, n)
    res = run_ntplib_from(tmp, src(3), box.addr, 3, 3)
    c.check("ntplib (v3) x3 from %s answered" % src(3),
            isinstance(res, list) and len(res) == 3 and all(x["stratum"] == STRATUM
                                                             for x in res), res)
    want[src(3)] = (3, 3, 3)
    r = ntpg.query(box.addr, 123, src=src(4), vn=2, timeout=2.0)
    c.check("raw v2 query from %s answered" % src(4), r is not None)
    want[src(4)] = (3, 2, 1)
    for label, source in (("from 127.0.0.1", None), ("from %s (nonce path)" % src(5), src(5))):
        rc, out, err, cmd = run_ntpq(box.addr, ["mrulist"], src=source)
        c.info(cmd)
        got = parse_mrulist(out)
        c.check("mrulist %s: exits 0, lists %d rows" % (label, len(got)),
                rc == 0 and "Traceback" not in err and got, "rc %s err %r" % (rc, err[-200:]))
        for a, (mode, vn, n) in sorted(want.items()):
            g = got.get(a)
            c.check("mrulist %s: %s listed, mode %d, v%d, count %d" % (label, a, mode, vn, n),
                    g is not None and g[:3] == (mode, vn, n), "got %s" % (g,))
    return sum(n for _, _, n in want.values())


def section_sysstats(c, box, time_queries):
    c.section("ntpq -c sysstats")
    rc, out, err, cmd = run_ntpq(box.addr, ["sysstats"])
    c.info(cmd)
    st = box.stats()

    def num(label):
        m = re.search(r"^%s:\s+(\d+)" % re.escape(label), out, re.M)
        return int(m.group(1)) if m else None
    rx, proc, ctlreq = num("packets received"), num("processed for time"), \
        num("control requests")
    c.check("sysstats exits 0 and shows packets received", rc == 0 and rx is not None,
            "rc %s err %r" % (rc, err[-200:]))
    if rx is None:
        return
    c.check("packets received (%s) >= the %d time queries + control requests (%s), and <= "
            "the daemon's received counter read after it (%s)" % (rx, time_queries, ctlreq,
                                                                 st.get("received")),
            rx >= time_queries + (ctlreq or 0) and rx <= st.get("received", 0))
    c.check("processed for time (%s) >= %d time queries and <= served counter (%s)" % (
        proc, time_queries, st.get("served")),
        proc is not None and time_queries <= proc <= st.get("served", 0) + st.get(
            "served_auth", 0) + st.get("served_leak", 0))


def section_reslist(c, box, keyfile, static):
    c.section("ntpq -c reslist (with the control key)")
    rc, out, err, cmd = run_ntpq(box.addr, ["reslist"], keyfile=keyfile, keyid=1)
    c.info(cmd)
    got = parse_reslist(out)
    c.check("reslist exits 0 with entries", rc == 0 and got and "***" not in err,
            "rc %s err %r" % (rc, err[-200:]))
    for addr, flags in static:
        c.check("reslist shows %s %s" % (addr, " ".join(sorted(flags)) or "(no flags)"),
                (addr, frozenset(flags)) in got,
                "entries for it: %s" % [sorted(f) for a, f in got if a == addr])
    c.check("reslist shows the default entries 0.0.0.0/0 and ::/0 with no flags",
            ("0.0.0.0/0", frozenset()) in got and ("::/0", frozenset()) in got)
    configured = {a for a, _ in static} | {"0.0.0.0/0", "::/0"}
    extra = [(a, sorted(f)) for a, f in got if a not in configured]
    c.check("every other entry is an interface self-block (ntpport interface ignore)",
            all(set(f) == {"ntpport", "interface", "ignore"} for _, f in extra), extra)
    # the same request without the key: refused by the server
    (reps,), dl = box.exchange([(src(6), ctl(11, "addr_restrictions"))], "reslist no MAC")
    c.check("READ_ORDLIST_A without a MAC: error 1 (permission), no list",
            is_error(reps, 1, 11), describe(reps))
    return got


def ntpdig_outcome(r):
    if r["json"]:
        return "served stratum %s" % r["json"]["stratum"]
    if "KOD" in r["err"].upper() or "kiss" in r["err"].lower():
        return "KoD"
    return "no reply (%s)" % r["err"][-80:]


def section_config(c, box, keyfile):
    net = cfg_net()
    c.section(":config restrict %s.0/24 noserve kod, then unrestrict, without a restart" % net)
    rc, out, err, cmd = run_ntpq(box.addr, [":config restrict %s.0 mask 255.255.255.0 noserve "
                                            "kod" % net], keyfile=keyfile, keyid=1)
    c.info(cmd + " -> " + out.strip()[:100])
    c.check(":config restrict ... noserve kod: Config Succeeded", rc == 0 and
            "Config Succeeded" in out, "rc %s out %r err %r" % (rc, out[-200:], err[-200:]))
    req = ntpg.client_request()
    r = box.exchange([("%s.5" % net, req)], "denied query")[0][0]
    c.check("a raw query from %s.5 gets a DENY KoD" % net,
            len(r) == 1 and not ntpg.kod_problems(req, r[0], "DENY"),
            "; ".join(ntpg.kod_problems(req, r[0], "DENY")) if r else "no reply")
    d = run_ntpdig_from("%s.6" % net, box.addr, timeout=1)
    c.check("ntpdig from %s.6 is refused (KoD or nothing, no time)" % net,
            d["json"] is None, ntpdig_outcome(d))
    rc, out, err, _ = run_ntpq(box.addr, ["reslist"], keyfile=keyfile, keyid=1)
    c.check("reslist now shows %s.0/24 noserve kod" % net,
            ("%s.0/24" % net, frozenset({"noserve", "kod"})) in parse_reslist(out))
    rc, out, err, cmd = run_ntpq(box.addr, [":config unrestrict %s.0 mask 255.255.255.0" % net],
                                 keyfile=keyfile, keyid=1)
    c.info(cmd + " -> " + out.strip()[:100])
    c.check(":config unrestrict: Config Succeeded", rc == 0 and "Config Succeeded" in out,
            "rc %s out %r err %r" % (rc, out[-200:], err[-200:]))
    r = ntpg.query(box.addr, 123, src="%s.5" % net, timeout=2.0)
    c.check("%s.5 is served again" % net, r is not None and r["reply"]["stratum"] == STRATUM)
    d = run_ntpdig_from("%s.6" % net, box.addr)
    c.check("ntpdig from %s.6 is served again" % net, d["json"] is not None, ntpdig_outcome(d))
    rc, out, err, _ = run_ntpq(box.addr, ["reslist"], keyfile=keyfile, keyid=1)
    c.check("reslist no longer shows %s.0/24" % net,
            not any(a == "%s.0/24" % net for a, _ in parse_reslist(out)))

    host = "%s.7" % net
    rc, out, err, cmd = run_ntpq(box.addr, [":config restrict %s noserve" % host],
                                 keyfile=keyfile, keyid=1)
    ok1 = "Config Succeeded" in out
    (r,), dl = box.exchange([(host, ntpg.client_request())], "noserve host")
    c.check(":config restrict %s noserve: succeeded, its query gets no reply (dropped_noserve)"
            % host, ok1 and not r and dl.get("dropped_noserve") == 1, "%s; %s" % (
                out.strip()[:60], show(dl)))
    rc, out, err, cmd = run_ntpq(box.addr, [":config delrestrict %s" % host],
                                 keyfile=keyfile, keyid=1)
    r = ntpg.query(box.addr, 123, src=host, timeout=2.0)
    c.check(":config delrestrict %s: succeeded, served again" % host,
            "Config Succeeded" in out and r is not None, out.strip()[:80])
    c.check("all without a restart: same pid %s" % box.pid,
            box.d.alive() and box.d.pid == box.pid)


def section_refusals(c, box, keyfile, tmp):
    c.section("refusals: noquery, nomodify, no key, wrong key, bad digest, forbidden directive")
    before = box.stats()
    rc, out, err, cmd = run_ntpq(box.addr, ["rv"], src=src(NOQUERY_K), timeout_ms=300)
    c.info(cmd)
    st = box.settle(before, 1)
    dl = ntpg.stats_delta(before, st)
    c.check("ntpq rv from the noquery source %s: times out, no variables" % src(NOQUERY_K),
            "timed out" in (out + err).lower() and "stratum=" not in out,
            "%r; dropped_noquery %+d" % ((out + err).strip()[-80:], dl.get("dropped_noquery",
                                                                          0)))
    c.check("... and the daemon counted it as dropped_noquery", dl.get("dropped_noquery", 0) >= 1,
            show({k: v for k, v in dl.items() if v and k.startswith(OUTCOMES)}))

    net = cfg_net()
    probe_line = ":config restrict %s.9 noserve" % net

    def not_applied():
        r = ntpg.query(box.addr, 123, src="%s.9" % net, timeout=1.0)
        return r is not None

    before = box.stats()
    rc, out, err, cmd = run_ntpq(box.addr, [probe_line], src=src(NOMODIFY_K), keyfile=keyfile,
                                 keyid=1)
    c.info(cmd + " -> " + (out + err).strip()[:100])
    dl = ntpg.stats_delta(before, box.stats())
    c.check(":config from the nomodify source %s with the control key: ntpq shows a "
            "permission error" % src(NOMODIFY_K),
            "PERMISSION" in err and "Config Succeeded" not in out,
            "out %r err %r" % (out[-100:], err[-100:]))
    c.check("... counted as ctl_refused_nomodify, not applied",
            dl.get("ctl_refused_nomodify") == 1 and not dl.get("ctl_config_applied") and
            not_applied(), show({k: v for k, v in dl.items() if v and k.startswith("ctl_")}))

    rc, out, err, cmd = run_ntpq(box.addr, [probe_line], keyfile=keyfile, keyid=2)
    c.info(cmd + " -> " + (out + err).strip()[:100])
    c.check(":config with trusted key 2 (not the control key): permission error, not applied",
            "PERMISSION" in err and "Config Succeeded" not in out and not_applied(),
            "out %r err %r" % (out[-100:], err[-100:]))

    text = probe_line[len(":config "):]
    reps, dl = box.exchange([(src(7), ctl(8, text)),
                             (src(7), ctl(8, text, key=KEY1, bad_digest=True)),
                             (src(7), ctl(8, text, key=(1, "SHA1", KEY2[2])))], "config no key")
    for (label, r) in zip(("without a MAC", "with key 1 and a bad digest",
                           "MACed with the wrong secret for key 1"), reps):
        c.check("CONFIGURE (hand-built) %s: error 1 (permission), 12 octets" % label,
                is_error(r, 1, 8) and len(r[0]) == 12, describe(r))
    c.check("... counted as ctl_refused_auth x3, nothing applied",
            dl.get("ctl_refused_auth") == 3 and not dl.get("ctl_config_applied") and
            not_applied(), show(dl))

    target = os.path.join(tmp, "forbidden.log")
    for line in ("logfile %s" % target, "keys %s" % target):
        rc, out, err, cmd = run_ntpq(box.addr, [":config " + line], keyfile=keyfile, keyid=1)
        c.info(cmd + " -> " + out.strip()[:100])
        c.check(":config %s with the control key: Config Failed (cannot be changed at runtime)"
                % line.split()[0], "Config Failed" in out and "runtime" in out and
                not os.path.exists(target), "out %r err %r" % (out[-160:], err[-100:]))
    c.check("the refusals left the daemon serving", box.alive_and_serving("refusals"))


def amp_requests():
    """(label, datagram) for the amplification sweep: every opcode with no data, then the
    requests that ask for the most."""
    names = ("version,processor,system,release,leap,stratum,precision,rootdelay,rootdisp,"
             "refid,reftime,clock,peer,tc,mintc,offset,frequency,sys_jitter,clk_jitter,"
             "clk_wander")
    ss = ("ss_uptime,ss_reset,ss_received,ss_thisver,ss_oldver,ss_ver1,ss_ver1client,"
          "ss_ver1zero,ss_ver1symm,ss_badformat,ss_badauth,ss_declined,ss_restricted,"
          "ss_limited,ss_kodsent,ss_processed,ss_numctlreq")
    clocks = ",".join(["clock"] * 78)[:467]
    out = [("opcode %d" % op, ctl(op)) for op in range(32)]
    out += [("READVAR version", ctl(2, "version")),
            ("READVAR default names", ctl(2, names)),
            ("READVAR sysstats names", ctl(2, ss)),
            ("READVAR clock x78 (467)", ctl(2, clocks)),
            ("READVAR reftime,clock", ctl(2, "reftime,clock")),
            ("READVAR assoc 1", ctl(2, assoc=1)),
            ("READSTAT assoc 1", ctl(1, assoc=1)),
            ("READ_MRU no nonce", ctl(10, "frags=32")),
            ("READ_MRU forged nonce", ctl(10, "nonce=%s, frags=32" % ("0" * 24))),
            ("READ_MRU limit, no nonce", ctl(10, "limit=256, mincount=0")),
            ("REQ_NONCE", ctl(12)),
            ("READ_ORDLIST_A", ctl(11, "addr_restrictions")),
            ("CONFIGURE, no MAC", ctl(8, "restrict default")),
            ("SETTRAP", ctl(6)),
            ("WRITEVAR", ctl(3, "stratum=1"))]
    return out


def amp_table(c, box, label, items, sources):
    """Send the items round-robin from sources; print and check the size table."""
    sent = [(sources[i % len(sources)], pkt) for i, (_, pkt) in enumerate(items)]
    reps, dl = box.exchange(sent, "amplification")
    c.info("%-26s %5s %4s %6s %6s %5s  %s" % ("request (%s)" % label, "in", "dgs", "out",
                                               "ratio", "bound", "reply"))
    bad, err_bad = [], []
    rows = []
    for (name, pkt), r in zip(items, reps):
        out = sum(len(x) for x in r)
        ratio = out / len(pkt)
        rows.append((name, len(pkt), len(r), out, ratio))
        c.info("%-26s %5d %4d %6d %6.2f %5d  %s" % (name, len(pkt), len(r), out, ratio,
                                                    bound(len(pkt)), describe(r)))
        if out > bound(len(pkt)):
            bad.append("%s: %d > %d" % (name, out, bound(len(pkt))))
        if r and ctl_decode(r[0]) and ctl_decode(r[0])["e"] and out > len(pkt):
            err_bad.append("%s: error of %d > request %d" % (name, out, len(pkt)))
    c.info("counters: " + show(dl))
    return rows, reps, bad, err_bad, dl


def section_amplification(c, box):
    c.section("amplification: unauthenticated mode 6 from %s / %s (not 127.0.0.1)" % (
        src(AMP_K), src(AMP2_K)))
    items = amp_requests()
    rows, reps, bad, err_bad, dl = amp_table(c, box, "mode 6", items,
                                             [src(AMP_K), src(AMP2_K)])
    c.check("every reply within max(480, 3 x request) octets (%d requests)" % len(items),
            not bad, "; ".join(bad))
    c.check("every error reply no larger than its request", not err_bad, "; ".join(err_bad))
    by = dict(zip([n for n, _ in items], reps))
    c.check("READ_MRU without a (valid) nonce gets nothing (4 variants, opcode 10 included)",
            not by["opcode 10"] and not by["READ_MRU no nonce"] and
            not by["READ_MRU forged nonce"] and not by["READ_MRU limit, no nonce"],
            describe(by["READ_MRU no nonce"]))
    c.check("... counted as ctl_dropped_nonce x4", dl.get("ctl_dropped_nonce") == 4, show(dl))
    c.check("REQ_NONCE answered with a nonce",
            "nonce=" in reply_text(by["REQ_NONCE"]), describe(by["REQ_NONCE"]))
    c.check("READVAR (no names) answered with data in one datagram",
            len(by["opcode 2"]) == 1 and "stratum=" in reply_text(by["opcode 2"]),
            describe(by["opcode 2"]))
    c.check("no request went unhandled or was rate-limited",
            not dl.get("dropped_ctl_limited"), show(dl))
    worst = max(rows, key=lambda r: r[4])
    c.info("largest ratio: %s, %d -> %d octets (%.1fx)" % (worst[0], worst[1], worst[3],
                                                            worst[4]))
    return rows


def section_loop(c, box):
    c.section("bug 1331: mode 6/7 responses, errors, fragments and mode 7 requests: no reply")
    resp = [("mode 6 R", ctl(2, r=True)), ("mode 6 E", ctl(2, e=True)),
            ("mode 6 M", ctl(2, m=True)), ("mode 6 R+E error", ctl(2, "x", r=True, e=True,
                                                                   status=0x0100)),
            ("mode 6 R+M", ctl(2, "stratum=7", r=True, m=True)),
            ("mode 6 offset 468", ctl(2, offset=468)),
            ("mode 6 R offset 4", ctl(2, r=True, offset=4)),
            ("mode 7 R", ntpg.mode7_packet(r=True)), ("mode 7 M", ntpg.mode7_packet(m=True)),
            ("mode 7 R+M monlist", ntpg.mode7_packet(r=True, m=True, request=20, impl=2))]
    reqs7 = [("mode 7 monlist impl 3", ntpg.mode7_packet(42, impl=3)),
             ("mode 7 monlist impl 2", ntpg.mode7_packet(20, impl=2))]
    s = ntpg.bind_udp("127.0.0.1", 123)
    if s is None:
        c.skip("from 127.0.0.1:123", "could not bind 127.0.0.1:123 (in use)")
    else:
        try:
            items = [(s, p) for _, p in resp + reqs7 + [("mode 6 READVAR", ctl(2))]]
            reps, dl = box.exchange(items, "1331 local")
        finally:
            s.close()
        got = sum(len(r) for r in reps)
        c.check("from 127.0.0.1:123: %d responses/errors, 2 mode 7 and 1 mode 6 request get "
                "no reply" % len(resp), got == 0, "%d replies; %s" % (got, show(dl)))
        c.check("... responses counted as dropped_ctl_response, requests dropped "
                "(interface self-block: dropped_ignore)",
                dl.get("dropped_ctl_response") == len(resp) and
                dl.get("dropped_ignore") == 3, show(dl))
    for source, port in ((src(LOOP_K), 0), (src(LOOP_K), 123)):
        socks = [box.sock(source, port)]
        try:
            items = [(socks[0], p) for _, p in resp + reqs7]
            reps, dl = box.exchange(items, "1331 other")
        finally:
            socks[0].close()
        got = sum(len(r) for r in reps)
        c.check("from %s:%s: %d responses/errors and 2 mode 7 requests get no reply" % (
            source, port or "any", len(resp)), got == 0, "%d replies; %s" % (got, show(dl)))
        c.check("... counted: dropped_ctl_response %d, dropped_mode7 2" % len(resp),
                dl.get("dropped_ctl_response") == len(resp) and dl.get("dropped_mode7") == 2,
                show(dl))


def section_counters(c, box):
    c.section("counters by name through rv, against SIGUSR1")
    rc, out, err, cmd = run_ntpq(box.addr, ["rv 0 served,ctl_answered,control_requests"])
    c.info(cmd + " -> " + out.strip()[:120])
    v = ntpg.parse_vars(out)
    st = box.stats()
    c.check("rv 0 served,ctl_answered,control_requests: all three read",
            all(k in v for k in ("served", "ctl_answered", "control_requests")), out[-160:])
    try:
        ok = int(v["served"]) <= st.get("served", 0) and \
            int(v["ctl_answered"]) <= st.get("ctl_answered", 0) and \
            int(v["control_requests"]) <= st.get("control_requests", 0) and \
            int(v["ctl_answered"]) >= 10
    except (KeyError, ValueError):
        ok = False
    c.check("... consistent with the SIGUSR1 counters read just after", ok,
            "rv %s; SIGUSR1 served %s ctl_answered %s control_requests %s" % (
                {k: v.get(k) for k in ("served", "ctl_answered", "control_requests")},
                st.get("served"), st.get("ctl_answered"), st.get("control_requests")))


# ---------------------------------------------------------------------------------------------
# Issue 13 D: mrulist over a table larger than one request's work (MON_WALK_BUDGET, 4096)
# ---------------------------------------------------------------------------------------------

MANY = 5000  # sources: about 45 pages for ntpq, within the per-source burst of 64 requests
MANY_TWICE = 30  # of them send a second query (count 2, for mincount=2)
MANY_K = (20, 21, 22)  # ntpq runs from these 127.78 sources, one each


def many_source(i):
    """The i-th of many sources, 127.(208 + salt).x.y (x.y from 0.1)."""
    return "127.%d.%d.%d" % (208 + ntpg.SALT, i // 254, i % 254 + 1)


def section_mrulist_many(c, tmp):
    c.section("ntpq -c mrulist over %d sources: every one listed once, filters and recent= "
              "page through the table (issue 13 D)" % MANY)
    d = ntpg.Daemon(tmp, [ntpg.server_addr(2)], port=123, stratum=STRATUM, name="mru",
                    extra=["threads 2", "restrict %s" % src(PROBE_K)], probe_src=src(PROBE_K))
    box = Box(c, d, src(PROBE_K))
    if not box.start():
        return
    req = ntpg.client_request()
    dst = ntpg.sockaddr(box.addr, box.port)
    order = list(range(MANY)) + list(range(MANY - MANY_TWICE, MANY))
    for start in range(0, len(order), 250):
        socks = []
        for i in order[start:start + 250]:
            s = ntpg.udp_socket(ntpg.family_of(box.addr), many_source(i))
            s.sendto(req, dst)
            socks.append(s)
        ntpg.barrier(box.addr, box.port, box.probe)
        for s in socks:
            s.close()
    everyone = {many_source(i) for i in range(MANY)}
    twice = {many_source(i) for i in range(MANY - MANY_TWICE, MANY)}
    runs = (("mrulist", everyone, lambda got: all(got.get(a, (0, 0, 0))[2] == (
                2 if a in twice else 1) for a in everyone)),
            ("mrulist mincount=2", twice, lambda got: not (set(got) & (everyone - twice))),
            ("mrulist recent=100", None, lambda got: len(got) == 100))
    for (cmd, want, extra_ok), k in zip(runs, MANY_K):
        t0 = time.monotonic()
        rc, out, err, text = run_ntpq(box.addr, [cmd], src=src(k), limit=60)
        took = time.monotonic() - t0
        got = parse_mrulist(out)
        rows = sum(1 for line in out.splitlines() if MRU_LINE.match(line))
        c.info("%s: %d rows in %.1f s" % (text, rows, took))
        c.check("%s: exits 0, one row per address (%d rows)" % (cmd, rows),
                rc == 0 and "Traceback" not in err and rows == len(got) and rows > 0,
                "rc %s err %r" % (rc, err[-200:]))
        if want is not None:
            c.check("%s: all %d expected sources listed" % (cmd, len(want)),
                    want <= set(got), "%d missing" % len(want - set(got)))
        c.check("%s: counts and filter as asked" % cmd, extra_ok(got))
    box.alive_and_serving("mrulist over %d sources" % MANY)
    box.stop()


def main(c, tmp):
    if not os.path.exists(NTPQ):
        c.check("ntpq unpacked at %s" % NTPQ, False, "run scripts/deps.sh test")
        return
    if ntpg.STANDIN:
        c.skip("all", "mode 6 checks are for ntpgated only")
        return
    keyfile = write_keys(tmp)
    static = [("%s/32" % src(NOMODIFY_K), {"nomodify"}), ("%s/32" % src(NOQUERY_K), {"noquery"}),
              ("%s/32" % src(PROBE_K), set())]
    extra = ["keys %s" % keyfile, "trustedkey 1 2", "controlkey 1",
             "restrict %s nomodify" % src(NOMODIFY_K), "restrict %s noquery" % src(NOQUERY_K),
             "restrict %s" % src(PROBE_K)]
    d = ntpg.Daemon(tmp, [ntpg.server_addr(1)], port=123, stratum=STRATUM, name="ctl",
                    extra=extra, probe_src=src(PROBE_K))
    box = Box(c, d, src(PROBE_K))
    if not box.start():
        return
    t0 = time.monotonic()
    # ntpq divides the packet counts by ss_reset: in the daemon's first second it must not be 0
    rc, out, err, cmd = run_ntpq(box.addr, ["rv 0 ss_uptime,ss_reset", "sysstats"])
    c.check("right after start (%.1f s): ss_uptime and ss_reset >= 1, sysstats prints rates" % (
        time.monotonic() - t0), rc == 0 and "ss_reset=0" not in out and "p/s" in out,
        "rc %s out %r err %r" % (rc, out[:200], err[-200:]))
    section_rv(c, box)
    section_peers(c, box)
    n = section_mrulist(c, box, tmp)
    section_sysstats(c, box, n)
    section_reslist(c, box, keyfile, static)
    section_config(c, box, keyfile)
    section_refusals(c, box, keyfile, tmp)
    section_amplification(c, box)
    section_loop(c, box)
    section_counters(c, box)
    box.alive_and_serving("end")
    c.info("sections took %.1f s" % (time.monotonic() - t0))
    box.stop()
    section_mrulist_many(c, tmp)
    main_config_apply(c, tmp, keyfile)


# ---------------------------------------------------------------------------------------------
# :config outside the exclusive section (issue 13 item 3), against a reload and the runtime
# lines' growth (item E). One more daemon, started with two test-only hooks:
# NTPG_TEST_RESOLVE_DELAY_MS (every host-name lookup takes that much longer, as with a DNS
# server that does not answer: here, without a network, a lookup fails at once) and
# NTPG_TEST_RELOAD_DELAY_MS (a SIGHUP reload waits that long between preparing and
# committing). Nothing here depends on outside DNS: nonexistent.invalid never resolves.
# ---------------------------------------------------------------------------------------------

SLOW_RESOLVE_MS = 2000
RELOAD_DELAY_MS = 1500
CFG_SRC_K, CFG_PROBE_K, CFG_HOST_K = 25, 26, 27
MAX_STALL = 0.5  # s: the worst time-reply latency allowed while a slow :config runs


def send_config(box, sock, text, seq, timeout=8.0):
    """One CONFIGURE signed with the control key on sock; (reply text or None, seconds)."""
    t0 = time.monotonic()
    got = box.ask(sock, ctl(8, text, seq=seq, key=KEY1), timeout=timeout)
    return (reply_text(got).strip() if got else None), time.monotonic() - t0


def probe_while(box, src_addr, busy, limit=15.0):
    """Time queries from src_addr, one after the other, while busy() (at most limit s):
    the latency of each (None: no reply within 3 s)."""
    out = []
    deadline = time.monotonic() + limit
    while busy() and time.monotonic() < deadline:
        t0 = time.monotonic()
        r = ntpg.query(box.addr, box.port, src=src_addr, timeout=3.0)
        out.append(time.monotonic() - t0 if r else None)
        time.sleep(0.01)
    return out


def section_config_nostall(c, box):
    c.section(":config naming a host that does not resolve (resolver %d ms slow): time replies "
              "to a client sending meanwhile are not delayed" % SLOW_RESOLVE_MS)
    sock = box.sock(src(CFG_SRC_K))
    res = {}

    def run():
        res["reply"], res["took"] = send_config(box, sock, "restrict nonexistent.invalid "
                                                "noserve", seq=301)

    th = threading.Thread(target=run)
    th.start()
    lat = probe_while(box, src(CFG_PROBE_K), th.is_alive)
    th.join(10)
    sock.close()
    got = [x for x in lat if x is not None]
    worst = max(got) if got else None
    c.info(":config took %.2f s, reply %r; %d time queries meanwhile, worst %s ms" % (
        res.get("took", 0), res.get("reply"), len(lat),
        "%.1f" % (worst * 1000) if worst is not None else "-"))
    c.check(":config restrict nonexistent.invalid: answered after the slow lookup (>= %.1f "
            "s), so the lookup did run" % (SLOW_RESOLVE_MS / 1000 * 0.9),
            res.get("reply") and "Config" in res["reply"] and
            res.get("took", 0) >= SLOW_RESOLVE_MS / 1000 * 0.9,
            "reply %r after %.2f s" % (res.get("reply"), res.get("took", 0)))
    c.check("every time query sent meanwhile was answered within %.0f ms (%d queries)" % (
        MAX_STALL * 1000, len(lat)), len(lat) >= 5 and len(got) == len(lat) and
        worst < MAX_STALL, "latencies ms: %s" % [round(x * 1000) if x else None
                                               for x in lat][:40])


def section_config_vs_reload(c, box):
    host = src(CFG_HOST_K)
    c.section("a SIGHUP reload prepared before a :config does not undo it (reload held %d ms "
              "between prepare and commit)" % RELOAD_DELAY_MS)
    mark = len(box.d.log_text())
    box.d.send_signal(signal.SIGHUP)
    held = ntpg.wait_until(lambda: "reload prepared" in box.d.log_text()[mark:], 5.0)
    sock = box.sock(src(CFG_SRC_K))
    reply, took = send_config(box, sock, "restrict %s noserve" % host, seq=302)
    sock.close()
    done = ntpg.wait_until(lambda: "configuration reloaded" in box.d.log_text()[mark:], 8.0)
    c.check("the reload was prepared and held, the :config sent meanwhile succeeded, the "
            "reload then finished", held and done and reply and "Config Succeeded" in reply,
            "held %s, reply %r after %.2f s, reloaded %s" % (bool(held), reply, took,
                                                             bool(done)))
    (r,), dl = box.exchange([(host, ntpg.client_request())], "noserve after reload")
    c.check("after the reload the :config line is still in force: %s gets no time "
            "(dropped_noserve)" % host, not r and dl.get("dropped_noserve") == 1,
            "%s; %s" % ("a reply" if r else "no reply", show(dl)))


def rss_kb(pid):
    m = re.search(r"VmRSS:\s+(\d+)", ntpg.read_text("/proc/%d/status" % pid))
    return int(m.group(1)) if m else 0


def section_config_growth(c, box):
    c.section(":config the same line 600 times (fresh requests): the runtime lines do not grow")
    # From 100 sources, at most 150 a second: within the mode 6 limits (64 per source, then
    # 8/s; 200/s in all), so that every request is answered.
    socks = [box.sock("%s.%d" % (cfg_net(), 100 + k)) for k in range(100)]
    line = "restrict %s.30 nomodify" % cfg_net()
    rss0, times, replies = rss_kb(box.pid), [], []
    mark = len(box.d.log_text())
    for i in range(600):
        reply, took = send_config(box, socks[i % 100], line, seq=1000 + i, timeout=3.0)
        times.append(took)
        replies.append(reply)
        time.sleep(max(0.0, 1 / 150 - took))
    rss1 = rss_kb(box.pid)
    sizes = [int(m) for m in re.findall(r"runtime lines in force: \d+ lines?, (\d+) octets",
                                        box.d.log_text()[mark:])]
    c.info("600 x :config %r: %.2f ms per :config (first 50 %.2f, last 50 %.2f), RSS %d -> %d "
           "kB" % (line, 1000 * sum(times) / len(times), 1000 * sum(times[:50]) / 50,
                   1000 * sum(times[-50:]) / 50, rss0, rss1))
    c.check("all 600 succeeded", all(r and "Config Succeeded" in r for r in replies),
            [r for r in replies if not r or "Config Succeeded" not in r][:3])
    c.check("the runtime lines in force stay the same size throughout (the line once)",
            len(sizes) == 600 and len(set(sizes)) == 1, "%d sizes logged: %s" % (
                len(sizes), sorted(set(sizes))[:10]))
    if ntpg.SANITIZE:  # freed memory stays in AddressSanitizer's quarantine
        c.info("RSS not checked in the sanitizer build (%d -> %d kB)" % (rss0, rss1))
    else:
        c.check("RSS grew by less than 200 kB (%d -> %d kB)" % (rss0, rss1),
                rss1 - rss0 < 200)

    c.section(":config distinct lines until the cap: refused with a clear error, nothing lost")
    full, n, last = None, 0, None
    for i in range(40):  # 8 lines a request: the 256-line cap is reached in the 32nd or so
        text = "\n".join("restrict 10.%d.%d.0/24 noserve" % (i, k) for k in range(8))
        reply, _ = send_config(box, socks[i], text, seq=2000 + i, timeout=3.0)
        last = reply
        if not reply or "Config Succeeded" not in reply:
            full = reply
            break
        n += 1
    c.check("refused once the runtime lines would exceed the cap: \"runtime configuration "
            "full\" after %d requests" % n, full is not None and "runtime configuration full"
            in full and 25 <= n <= 32, "last reply %r after %d" % (last, n))
    r = ntpg.query(box.addr, box.port, src="%s.30" % cfg_net(), timeout=2.0)
    (r2,), dl = box.exchange([(box.probe, ntpg.client_request())], "after cap")
    c.check("the lines applied before stay in force; the daemon serves on",
            r is not None and len(r2) == 1, "%s" % show(dl))
    for sk in socks:
        sk.close()


def hooked_box(c, tmp, keyfile, name, env):
    """A daemon on server_addr(2) started with test hooks (env), or None."""
    extra = ["keys %s" % keyfile, "trustedkey 1 2", "controlkey 1", "threads 2",
             "restrict %s" % src(CFG_PROBE_K)]
    d = ntpg.Daemon(tmp, [ntpg.server_addr(2)], port=123, stratum=STRATUM, name=name,
                    extra=extra, probe_src=src(CFG_PROBE_K))
    box = Box(c, d, src(CFG_PROBE_K))
    os.environ.update(env)
    try:
        ok = box.start()
    finally:
        for k in env:
            del os.environ[k]
    return box if ok else None


def main_config_apply(c, tmp, keyfile):
    """After the main daemon stopped: one daemon with the slow resolver (its unresolvable
    runtime line would slow every later :config), then one with the held reload."""
    box = hooked_box(c, tmp, keyfile, "cfgslow",
                     {"NTPG_TEST_RESOLVE_DELAY_MS": str(SLOW_RESOLVE_MS)})
    if not box:
        return
    section_config_nostall(c, box)
    box.alive_and_serving("slow :config")
    box.stop()
    box = hooked_box(c, tmp, keyfile, "cfgapply",
                     {"NTPG_TEST_RELOAD_DELAY_MS": str(RELOAD_DELAY_MS)})
    if not box:
        return
    section_config_vs_reload(c, box)
    section_config_growth(c, box)
    box.alive_and_serving("config apply")
    box.stop()


if __name__ == "__main__":
    ntpg.run(main)
