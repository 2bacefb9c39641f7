"""Client-side CVEs (the client rows of the CVE table in docs/security.md) against fake upstreams: each fake server
S is a Python UDP socket on one of this file's addresses, port 123, that an ntpgated (-x)
polls with `server S iburst minpoll 3 maxpoll 3`. S reads every request (so it knows the real
origin cookie) and crafts the replies. All scenarios run at the same time, one daemon each:

  origin   CVE-2015-7704 (RATE/DENY KoDs with random, zero and stale origins: no KoD
           counted, dropped_bogus_origin / dropped_zero_origin move), CVE-2015-8138 /
           CVE-2016-7431 (mode 4 with origin 0: no sample), CVE-2016-4954 (a second reply
           with the right origin, identical or not: rejected), then a RATE with the right
           origin and poll 17 is honoured (client_kod_rate, and the log says the poll is
           raised to 2^kodratecap = 16 s);
  flood    CVE-2020-11868: S-sourced replies with random origins (and RATE/DENY KoDs) every
           second; the request intervals measured at S match the undisturbed `control`;
  control  the undisturbed schedule; at the end a DENY with the right origin is honoured
           (client_kod_deny; the log says 2^kodbackoff = 16 s of silence);
  auth     CVE-2015-1798 (`server S key 1`: replies without MAC, with a bad digest, a
           crypto-NAK: no sample, dropped_auth), CVE-2015-7974 (key 2 is trusted too: a valid
           key-2 MAC is rejected), an unsigned DENY with the right origin is not obeyed,
           CVE-2016-1547 / 4953 (a crypto-NAK or bad MAC with the right origin, also malformed
           NAKs of 52 octets with a key id and of 56 octets, before the real reply: the
           association survives and the real reply is accepted);
  volume   `burst` (many requests), plus CVE-2016-1551: replies spoofed from 127.127.1.1 /
           127.127.1.0 (the local clock's address) are ignored.
Over every request of every scenario: CVE-2020-13817 (transmit timestamps random: none near
the real time, no correlation with arrival time, low bits spread) and CVE-2019-11331 (source
port never 123, one random port per association). MACs are computed here with hashlib
(key `1 MD5 <ascii>`: digest = md5(key + packet)).

The waits that follow the genuine KoDs (16 s to the next request after the RATE, 16 s of
silence after the DENY) are protocol timing, not security: tests/unit/test_sim.c
(test_sim_short_kod_timeline_from_config) checks them with this file's configuration on the
simulated clock, so this file's real timeline ends shortly after the KoDs."""

import hashlib
import os
import random
import select
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

TOS = "tos kodbackoff 3 kodbackoffmax 4 kodratecap 4"
POLL = "iburst minpoll 3 maxpoll 3"
PROBE = ntpg.source_addr(31)
RUN_FOR = 30.0      # s of the common timeline: the genuine KoDs go out at about 26 s
KOD_AT = 24.0       # s: the genuine KoDs go out at the first request after this
KEY1 = b"cve-client-key-1"   # ASCII keys (ntpd: up to 20 characters are taken as text)
KEY2 = b"cve-client-key-2"
UP_STRATUM = 3
UP_REFID = b"GPS\0"


def A(k):
    return ntpg.server_addr(k)


def u32(b):
    return struct.unpack("!I", b)[0]


def mac(key_id, key, pkt):
    return pkt + struct.pack("!I", key_id) + hashlib.md5(key + pkt).digest()


def reply(req, org=None, kiss=None, poll=None, now=None):
    """A mode 4 reply to req (synchronized, stratum 3, GPS), or a KoD when kiss is given.
    org None: the request's transmit timestamp (the cookie)."""
    q = ntpg.decode(req)
    now = time.time() if now is None else now
    li, stratum, refid = (3, 0, kiss.encode()) if kiss else (0, UP_STRATUM, UP_REFID)
    return ntpg.build_packet(li=li, vn=q["vn"], mode=4, stratum=stratum,
                             poll=q["poll"] if poll is None else poll, precision=-20,
                             rootdelay=0x10, rootdisp=0x20, refid=u32(refid),
                             ref=ntpg.unix_to_ntp(now - 1), org=q["xmt"] if org is None else org,
                             rec=ntpg.unix_to_ntp(now), xmt=ntpg.unix_to_ntp(now + 1e-5))


class Fake:
    """One fake upstream: its socket, every request seen (t, src, sport, raw) and what it
    sent, counted by kind."""

    def __init__(self, name, k, policy):
        self.name, self.addr, self.policy = name, A(k), policy
        self.sock = ntpg.bind_udp(self.addr, 123)
        self.reqs = []
        self.sent = {}
        self.peer = None
        self.t0 = None

    def send(self, kind, data, peer=None):
        self.sock.sendto(data, peer or self.peer)
        self.sent[kind] = self.sent.get(kind, 0) + 1

    def handle(self, data, peer, t):
        if len(data) < 48 or data[0] & 7 != 3:
            return
        self.peer = peer
        self.reqs.append((t, peer[0], peer[1], data))
        self.policy(self, data, len(self.reqs) - 1, t)


# ---------------------------------------------------------------------------------------------
# policies: what each fake server answers to request n (t: seconds since the start)
# ---------------------------------------------------------------------------------------------

def policy_origin(s, req, n, t):
    if getattr(s, "kod_sent", False):
        s.send("real", reply(req))
        return
    if t >= KOD_AT:  # the genuine RATE: right origin, poll 17; must be honoured (capped)
        s.send("genuine_rate", reply(req, kiss="RATE", poll=17))
        s.kod_sent, s.kod_t = True, t
        return
    s.send("bogus", reply(req, org=random.getrandbits(64) | 1, kiss="RATE", poll=17))
    s.send("zero", reply(req, org=0, kiss="DENY"))
    if n > 0:
        s.send("bogus", reply(req, org=u32(s.reqs[n - 1][3][40:44]) << 32 |
                              u32(s.reqs[n - 1][3][44:48]), kiss="RATE", poll=17))
    s.send("zero", reply(req, org=0))  # CVE-2015-8138/2016-7431: plausible, origin 0
    real = reply(req)
    s.send("real", real)
    s.send("second", real)          # CVE-2016-4954: the same reply again
    s.send("second", reply(req))    # and another one with the right origin


def policy_plain(s, req, n, t):
    s.send("real", reply(req))


def policy_control(s, req, n, t):
    if t >= KOD_AT and not getattr(s, "kod_sent", False):
        s.send("genuine_deny", reply(req, kiss="DENY"))
        s.kod_sent, s.kod_t = True, t
        return
    s.send("real", reply(req))


def policy_auth(s, req, n, t):
    r = reply(req)
    attacks = {0: ("nomac", r),
               1: ("key2", mac(2, KEY2, r)),                        # CVE-2015-7974
               2: ("baddigest", mac(1, KEY1, r)[:-1] + b"\0"),
               3: ("nak", r + b"\0" * 4),                            # crypto-NAK, 52 octets
               4: ("unsigned_deny", reply(req, kiss="DENY"))}
    if n in attacks:  # only the attack: no sample may come of it
        s.send(*attacks[n])
        return
    # CVE-2016-1547/4953: an attack with the right origin first, then the real reply
    first = {5: ("nak52_keyid", r + struct.pack("!I", 1)),
             6: ("len56", r + b"\0" * 8),
             7: ("nak", r + b"\0" * 4)}.get(n, ("baddigest", mac(1, KEY1, r)[:-1] + b"\1"))
    s.send(*first)
    s.send("real", mac(1, KEY1, reply(req)))


def policy_volume(s, req, n, t):
    # CVE-2016-1551: the real reply, first as if from the local clock's addresses
    r = reply(req)
    for spoof in s.spoofers:
        spoof.sendto(r, s.peer)
        s.sent["spoofed"] = s.sent.get("spoofed", 0) + 1
    s.send("real", r)


def flood(s):
    """CVE-2020-11868: once a second, S-sourced replies with random origins."""
    if not s.reqs:
        return
    req = s.reqs[-1][3]
    s.send("flood", reply(req, org=random.getrandbits(64) | 1))
    s.send("flood", reply(req, org=random.getrandbits(64) | 1, kiss="RATE", poll=17))
    s.send("flood", reply(req, org=random.getrandbits(64) | 1, kiss="DENY"))


def serve(fakes, stop, t0, tick):
    socks = {f.sock: f for f in fakes}
    next_tick = time.monotonic() + 1.0
    while not stop.is_set():
        wait = max(0.0, min(0.2, next_tick - time.monotonic()))
        for sock in select.select(list(socks), [], [], wait)[0]:
            for _ in range(64):
                try:
                    data, peer = sock.recvfrom(2048, 0x40)  # MSG_DONTWAIT
                except (BlockingIOError, ConnectionRefusedError):
                    break
                socks[sock].handle(data, peer, time.monotonic() - t0)
        if time.monotonic() >= next_tick:
            next_tick += 1.0
            tick()


# ---------------------------------------------------------------------------------------------

def daemon(tmp, name, k, server_line, extra=(), stratum=None):
    return ntpg.Daemon(tmp, [A(k)], stratum=stratum, name=name, probe_src=PROBE,
                       extra=[server_line, TOS] + list(extra))


def cstats(d):
    s = d.stats() or {}
    return {k[7:]: v for k, v in s.items() if k.startswith("client_")}


def settled_cstats(d, timeout=5.0):
    """The client counters once they stop moving: two snapshots in a row alike (each one a
    SIGUSR1 whose lines have all been written), bounded by timeout."""
    last = [None]

    def same():
        now = cstats(d)
        if now and now == last[0]:
            return now
        last[0] = now
        return None
    return ntpg.wait_until(same, timeout, 0.05) or last[0] or {}


def moved(st):
    return {k: v for k, v in st.items() if v}


def gaps(f, until=None):
    ts = [r[0] for r in f.reqs if until is None or r[0] < until]
    return [round(b - a, 2) for a, b in zip(ts, ts[1:])]


def main(c, tmp):
    fakes = {
        "origin": Fake("origin", 1, policy_origin),
        "flood": Fake("flood", 2, policy_plain),
        "control": Fake("control", 3, policy_control),
        "auth": Fake("auth", 4, policy_auth),
        "volume": Fake("volume", 5, policy_volume),
    }
    for f in fakes.values():
        if not c.check("fake server %s binds %s:123" % (f.name, f.addr), f.sock is not None):
            return
    fakes["volume"].spoofers = [s for s in (ntpg.bind_udp(a, 0) for a in
                                            ("127.127.1.1", "127.127.1.0")) if s]
    c.check("spoofing sockets on 127.127.1.1 and 127.127.1.0",
            len(fakes["volume"].spoofers) == 2)
    keys = ntpg.write_text(os.path.join(tmp, "client.keys"), "1 MD5 %s\n2 MD5 %s\n" % (
        KEY1.decode(), KEY2.decode()))
    ds = {
        "origin": daemon(tmp, "d-origin", 9, "server %s %s" % (A(1), POLL)),
        "flood": daemon(tmp, "d-flood", 10, "server %s %s" % (A(2), POLL)),
        "control": daemon(tmp, "d-control", 11, "server %s %s" % (A(3), POLL),
                          ["tos kodbackoff 4 kodbackoffmax 5"]),
        "auth": daemon(tmp, "d-auth", 12, "server %s %s key 1" % (A(4), POLL),
                       ["keys %s" % keys, "trustedkey 1 2"]),
        "volume": daemon(tmp, "d-volume", 13, "server %s iburst burst minpoll 3 maxpoll 3" %
                         A(5), stratum=10),
    }
    stop = threading.Event()
    t0 = time.monotonic()
    th = threading.Thread(target=serve, args=(list(fakes.values()), stop, t0,
                                              lambda: flood(fakes["flood"])), daemon=True)
    th.start()
    try:
        for name, d in ds.items():
            if not c.check("ntpgated %s answers on %s" % (name, d.listen[0]), d.start(),
                           why="rc %s %r" % (d.rc, d.stderr_text()[-300:])):
                return
        ts = {}
        for _ in range(int(RUN_FOR) + 2):  # bounded: one look a second
            t = time.monotonic() - t0
            if t >= RUN_FOR:
                break
            for name in ("flood", "volume"):
                r = ntpg.query(ds[name].listen[0], 123, src=PROBE, timeout=0.3)
                if r and r["reply"]["stratum"] == UP_STRATUM + 1 and name not in ts:
                    ts[name] = round(t, 1)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - t)))  # pacing, one look a second
        # the fakes (and the flood) stop first, so every packet they sent has been handled
        # when the counters are read
        stop.set()
        th.join(3)
        stats = {name: settled_cstats(d) for name, d in ds.items()}
        served = {}
        for name, d in ds.items():
            r = ntpg.query(d.listen[0], 123, src=PROBE, timeout=0.5)
            served[name] = r and (r["reply"]["stratum"], ntpg.refid_text(r["reply"]["refid"]))
    finally:
        stop.set()
        th.join(3)
    for name in ds:
        c.info("%s: %d requests at S, S sent %s; client counters %s; serves %s" % (
            name, len(fakes[name].reqs), fakes[name].sent, moved(stats[name]), served[name]))
    check_origin(c, fakes["origin"], stats["origin"], ds["origin"])
    check_flood(c, fakes["flood"], fakes["control"], stats["flood"], served["flood"])
    check_control(c, fakes["control"], stats["control"], ds["control"])
    check_auth(c, fakes["auth"], stats["auth"], ds["auth"])
    check_volume(c, fakes["volume"], stats["volume"], served["volume"])
    check_requests(c, fakes)
    c.section("shutdown")
    for name, d in ds.items():
        rc, took = d.stop()
        c.check("%s: SIGTERM exits 0" % name, rc == 0, "rc %s after %.2f s" % (rc, took))
        rep = d.sanitizer_report()
        c.check("%s: no sanitizer report" % name, not rep, rep)
    for f in fakes.values():
        f.sock.close()
    for s in fakes["volume"].spoofers:
        s.close()


def check_origin(c, f, st, d):
    c.section("CVE-2015-7704, CVE-2015-8138/2016-7431, CVE-2016-4954 (forged KoDs, zero "
              "origin, second replies)")
    sent = f.sent
    c.check("CVE-2015-7704: forged RATE/DENY (random, zero, stale origins) not obeyed: "
            "client_kod_rate counts only the genuine one, client_kod_deny 0",
            st.get("kod_rate", 0) == sent.get("genuine_rate", 0) == 1 and not st.get("kod_deny"),
            "kod_rate %s kod_deny %s (forged: %d random/stale, %d zero-origin)" % (
                st.get("kod_rate"), st.get("kod_deny"), sent.get("bogus", 0),
                sent.get("zero", 0)))
    c.check("... counted as client_dropped_bogus_origin (one per random/stale origin)",
            st.get("dropped_bogus_origin", 0) == sent.get("bogus", 0) > 0,
            "dropped_bogus_origin %s, sent %s" % (st.get("dropped_bogus_origin"),
                                                  sent.get("bogus")))
    c.check("CVE-2015-8138/2016-7431: origin 0 (KoD or plausible reply) never a sample: "
            "client_dropped_zero_origin = all of them",
            st.get("dropped_zero_origin", 0) == sent.get("zero", 0) > 0,
            "dropped_zero_origin %s, sent %s" % (st.get("dropped_zero_origin"), sent.get("zero")))
    second = st.get("dropped_not_pending", 0) + st.get("dropped_duplicate", 0)
    c.check("CVE-2016-4954: every second reply with the right origin rejected "
            "(dropped_not_pending + dropped_duplicate)", second == sent.get("second", 0) > 0,
            "not_pending %s duplicate %s, sent %s" % (st.get("dropped_not_pending"),
                                                      st.get("dropped_duplicate"),
                                                      sent.get("second")))
    c.check("... and exactly one sample per real reply",
            st.get("sample", 0) == sent.get("real", 0), "samples %s, real replies %s" % (
                st.get("sample"), sent.get("real")))
    g = gaps(f, until=getattr(f, "kod_t", None))
    c.check("polling continued on schedule under forged KoDs (burst 2 s, then 8..8.6 s)",
            len(g) >= 6 and all(1.9 <= x <= 2.3 or 7.9 <= x <= 8.7 or x < 0.3 for x in g), g)
    kt = getattr(f, "kod_t", None)
    nxt = [r[0] for r in f.reqs if kt is not None and r[0] > kt]
    if c.check("the genuine RATE (right origin, poll 17) was sent at %s s" % kt, kt is not None):
        c.check("RATE with the right origin honoured: no request in the %.1f s left of the run "
                "(the 16 s wait: tests/unit/test_sim.c)" % (RUN_FOR - kt),
                not nxt and st.get("kod_rate") == 1,
                "next request %s s later" % (round(nxt[0] - kt, 2) if nxt else "none"))
        c.check("log: 'KoD RATE from %s:123: poll raised to at least 2^4 s'" % f.addr,
                "KoD RATE from %s:123: poll raised to at least 2^4 s" % f.addr in d.log_text())


def check_flood(c, f, ctl, st, served):
    c.section("CVE-2020-11868 (bad-origin replies and KoDs every second)")
    until = min(getattr(ctl, "kod_t", RUN_FOR), RUN_FOR)
    g, gc = gaps(f, until), gaps(ctl, until)
    c.info("request gaps at S under the flood: %s; undisturbed: %s" % (g, gc))
    same = len(g) >= 6 and abs(len(g) - len(gc)) <= 1 and \
        all(abs(a - b) <= 0.7 for a, b in zip(g, gc))
    c.check("the request schedule under the flood matches the undisturbed one (each gap "
            "within 0.7 s: the poll jitter is up to 1/16)", same)
    c.check("flood packets all dropped (bogus origin or not pending), no KoD obeyed",
            st.get("dropped_bogus_origin", 0) + st.get("dropped_not_pending", 0) ==
            f.sent.get("flood", 0) > 0 and not st.get("kod_rate") and not st.get("kod_deny"),
            "flood sent %s, bogus %s, not_pending %s" % (f.sent.get("flood"),
                                                         st.get("dropped_bogus_origin"),
                                                         st.get("dropped_not_pending")))
    c.check("still synchronized under the flood: serves stratum %d, refid %s" % (
        UP_STRATUM + 1, f.addr), served == (UP_STRATUM + 1, f.addr), served)


def check_control(c, f, st, d):
    c.section("the undisturbed control, then a DENY with the right origin")
    kt = getattr(f, "kod_t", None)
    if not c.check("genuine DENY sent at %s s" % kt, kt is not None):
        return
    nxt = [r[0] for r in f.reqs if r[0] > kt]
    c.check("DENY with the right origin honoured: client_kod_deny 1, silent for the rest of "
            "the run (the 16 s of kodbackoff 4: tests/unit/test_sim.c)",
            st.get("kod_deny") == 1 and not nxt,
            "next request %s" % (round(nxt[0] - kt, 2) if nxt else "none"))
    c.check("log: 'KoD DENY from %s:123: not polling it for 16 s'" % f.addr,
            "KoD DENY from %s:123: not polling it for 16 s" % f.addr in d.log_text())


def check_auth(c, f, st, d):
    c.section("CVE-2015-1798, CVE-2015-7974, CVE-2016-1547/4953 (`server S key 1`, key 2 "
              "trusted too)")
    reqs = f.reqs
    c.check("every request carries a MAC with key 1 (68 octets, valid)",
            reqs and all(len(r[3]) == 68 and u32(r[3][48:52]) == 1 and
                         hashlib.md5(KEY1 + r[3][:48]).digest() == r[3][52:] for r in reqs),
            "%d requests" % len(reqs))
    attacks = sum(v for k, v in f.sent.items() if k != "real")
    dropped = sum(v for k, v in st.items() if k.startswith("dropped"))
    c.check("no MAC, key 2 (valid, CVE-2015-7974), bad digest, crypto-NAK, unsigned DENY, "
            "malformed NAKs: every one dropped (client_dropped_auth for the 5 attack-only "
            "requests at least), none a sample or a KoD",
            dropped == attacks >= 5 and st.get("dropped_auth", 0) >= 5 and not st.get("kod_deny"),
            "attacks %s -> %s" % ({k: v for k, v in f.sent.items() if k != "real"},
                                  {k: v for k, v in st.items() if k.startswith("dropped") and v}))
    c.check("the first 5 requests (attacks only) gave no sample; every real reply after an "
            "attack with the right origin was accepted (association survives)",
            st.get("sample", 0) == f.sent.get("real", 0) > 0,
            "samples %s, real (key 1) replies %s" % (st.get("sample"), f.sent.get("real")))
    first5 = [round(r[0], 1) for r in reqs[:6]]
    c.check("no reachability from the attacks: the iburst went on at 2 s (requests at %s)" %
            first5, len(reqs) >= 6 and all(1.8 <= b - a <= 2.4 for a, b in
                                            zip(first5, first5[1:])))


def check_volume(c, f, st, served):
    c.section("CVE-2016-1551 (replies from 127.127.1.1 / 127.127.1.0) and `burst`")
    c.check("spoofed replies from 127.127.1.x never reach the association (its socket is "
            "connected to S): one sample per real reply, nothing dropped",
            f.sent.get("spoofed", 0) > 0 and st.get("sample", 0) == f.sent.get("real", 0)
            and not any(v for k, v in st.items() if k.startswith("dropped")),
            "spoofed %s, real %s, counters %s" % (f.sent.get("spoofed"), f.sent.get("real"),
                                                  moved(st)))
    c.check("synchronized to S (stratum %d), not to anything from 127.127.x" % (UP_STRATUM + 1),
            served == (UP_STRATUM + 1, f.addr), served)


def check_requests(c, fakes):
    c.section("CVE-2020-13817 and CVE-2019-11331 over every request")
    reqs = [(f.name,) + r for f in fakes.values() for r in f.reqs]
    wall0 = time.time() - time.monotonic()
    xs = [struct.unpack("!Q", r[4][40:48])[0] for r in reqs]
    # 40 random transmit timestamps leave a quarter of the low or high halves empty with a
    # probability under 2 * 4 * (3/4)^40 = 8e-5
    c.check("at least 40 requests collected", len(reqs) >= 40, len(reqs))
    near = [x for x, r in zip(xs, reqs) if abs(ntpg.ntp_to_unix(x) - (wall0 + r[1])) < 86400]
    c.check("CVE-2020-13817: no transmit timestamp within a day of the real time",
            not near, "%d of %d near" % (len(near), len(xs)))
    c.check("transmit timestamps all distinct", len(set(xs)) == len(xs))
    ts = [r[1] for r in reqs]
    hi = [x >> 32 for x in xs]
    rr = corr(ts, hi)
    c.check("no correlation between arrival time and the transmit seconds (|r| < 0.5)",
            rr is not None and abs(rr) < 0.5, "r = %s over %d" % (rr and round(rr, 3), len(xs)))
    lo = [x & 0xFFFFFFFF for x in xs]
    quart = [sum(1 for v in lo if v >> 30 == q) for q in range(4)]
    hquart = [sum(1 for v in hi if v >> 30 == q) for q in range(4)]
    c.check("low and high 32 bits spread over all four quarters",
            all(quart) and all(hquart), "low %s high %s" % (quart, hquart))
    others = [r for r in reqs if any(r[4][i] for i in range(1, 40) if i not in (2, 3))]
    c.check("requests are data-minimized: all zero but LI/VN/mode, poll, precision, transmit",
            not others, "%d not minimized" % len(others))
    c.check("CVE-2019-11331: no request from source port 123", all(r[3] != 123 for r in reqs),
            sorted({r[3] for r in reqs})[:10])
    ports = {f.name: {r[2] for r in f.reqs} for f in fakes.values()}
    c.check("one port per association, a different one for each",
            all(len(p) == 1 for p in ports.values()) and
            len(set.union(*ports.values())) == len(ports), ports)


def corr(a, b):
    n = len(a)
    if n < 3:
        return None
    ma, mb = sum(a) / n, sum(b) / n
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    if not va or not vb:
        return None
    return sum((x - ma) * (y - mb) for x, y in zip(a, b)) / (va * vb) ** 0.5


if __name__ == "__main__":
    ntpg.run(main)
