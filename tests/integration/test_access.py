"""Access control (issue 3) without Kiss-o'-Death: each restrict flag seen by real clients
(ntpdig, ntplib and chronyd -Q) and by hand-built packets from many 127.78.x sources, with the
reason counter it must move; overlapping masks and prefixes (the most specific entry wins, in
any configuration order), unrestrict/delrestrict, host names, ntpport, IPv6 ::1 with `-6
default`; the bug 1331 loop (mode 6/7 responses from any source, from 127.0.0.1 port 123 and
forged from the daemon's own address are never answered); SIGHUP changing restrictions
without a restart while the monitor table survives, and a bad reload keeping the old ones.
Every time reply seen is no longer than its request, and every mode 6 answer is within the
control path's bound. The KoD side is test_kod.py; ntpq itself is test_control.py."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

STRATUM = 6
PROBE_K = 31          # source_addr(31): unrestricted in every config; readiness and barriers
BASE = ntpg.SALT * 32  # last octet of source_addr(k) is BASE + k
MODE6 = "control_requests"  # what a mode 6 request that passes the restrictions gets (answered by the control path)


def src(k):
    return ntpg.source_addr(k)


def daemon(c, tmp, name, k, extra, **kw):
    return ntpg.AccessDaemon(c, tmp, name, k, extra, stratum=STRATUM, probe_k=PROBE_K, **kw)


def req(vn=4, poll=0):
    return ntpg.build_packet(vn=vn, mode=3, poll=poll, precision=0x20)


def answered(r, i=None):
    """Number of replies in a burst result (or to its i-th packet)."""
    if r is None:
        return -1
    if i is not None:
        return len(r["replies"][i])
    return sum(len(x) for x in r["replies"]) + len(r["stray"])


def control_answers(r):
    """Mode 6 replies in a burst result (they match no time request, so they are `stray`)."""
    return [x for x in (r or {}).get("stray", []) if x and x[0] & 7 == 6]


def served_ok(rep_raw, request):
    d = ntpg.decode(rep_raw)
    return d and d["mode"] == 4 and d["stratum"] == STRATUM and d["li"] == 0 and \
        rep_raw[24:32] == request[40:48]


def no_reply(res):
    return "error" in res


def brief(res):
    """A client result in a few words."""
    if "error" not in res:
        return "stratum %s" % res.get("stratum")
    if "No response" in res["error"] or "no eligible servers" in res["error"]:
        return "no reply"
    return res["error"][-160:]


# ---------------------------------------------------------------------------------------------
# 1. every flag, hand-built packets, one source per flag in one daemon
# ---------------------------------------------------------------------------------------------

def section_flags_raw(c, tmp):
    c.section("flags with hand-built packets (one source per flag)")
    flake_net = "127.78.%d.%d/29" % (ntpg.test_number(), BASE + 16)  # sources 16..23
    lines = ["restrict %s ignore" % src(1), "restrict %s noserve" % src(2),
             "restrict %s notrust" % src(3), "restrict %s version" % src(4),
             "restrict %s noquery" % src(6), "restrict %s nomodify" % src(7),
             "restrict %s nopeer" % src(8), "restrict %s ntpport noserve" % src(9),
             "restrict %s serverresponse fuzz" % src(11),
             "restrict %s flake" % flake_net]
    r = daemon(c, tmp, "flags", 1, lines)
    if not r.start():
        return
    m6, m7 = ntpg.mode6_packet(opcode=2), ntpg.mode7_packet(request=42)

    entries0 = r.snap.get("mon_entries")
    b = r.burst(src(1), [req(), m6, m7, req(vn=3)])
    c.check("ignore: no reply to mode 3, 6 or 7", answered(b) == 0, answered(b))
    dl = r.counters("ignore", {"dropped_ignore": 4})
    if dl is not None:
        c.check("ignore: takes no monitor slot (mon_entries unchanged)",
                r.snap.get("mon_entries") == entries0,
                "%s -> %s" % (entries0, r.snap.get("mon_entries")))

    b = r.burst(src(2), [req(), req(vn=3), m6, m7])
    c.check("noserve: no time reply, the mode 6 query answered (noserve leaves queries alone)",
            answered(b) == 1 and len(control_answers(b)) == 1, answered(b))
    r.counters("noserve (mode 3 refused; mode 6 answered; mode 7 never)",
               {"dropped_noserve": 2, MODE6: 1, "dropped_mode7": 1})

    mac = req() + ntpg.mac_trailer(1, 16)
    sha = req() + ntpg.mac_trailer(2, 20)
    b = r.burst(src(3), [req(), mac, sha])
    c.check("notrust: no reply without a MAC", answered(b, 0) == 0, answered(b, 0))
    for i, p in ((1, mac), (2, sha)):  # ntp_acc(5): no time unless authenticated
        reps = b["replies"][i] if b else []
        c.check("notrust: a MAC that cannot verify (%d octets) gets nothing (a crypto-NAK "
                "would carry our time)" % len(p), reps == [],
                [(len(x), x[48:].hex()) for x in reps])
    r.counters("notrust", {"dropped_notrust": 3})

    vs = [req(vn=v) for v in (1, 2, 3, 4)]
    b = r.burst(src(4), vs)
    c.check("version: v1-v3 dropped, v4 served", b and [answered(b, i) for i in range(4)] ==
            [0, 0, 0, 1] and served_ok(b["replies"][3][0], vs[3]),
            b and [answered(b, i) for i in range(4)])
    r.counters("version", {"dropped_version": 3, "served": 1})

    b = r.burst(src(6), [m6, m7, ntpg.mode6_packet(opcode=1), req()])
    c.check("noquery: mode 6/7 dropped, time served", b and
            [answered(b, i) for i in range(4)] == [0, 0, 0, 1],
            b and [answered(b, i) for i in range(4)])
    r.counters("noquery", {"dropped_noquery": 3, "served": 1})

    b = r.burst(src(7), [ntpg.mode6_packet(opcode=8, data=b"restrict default"),
                         ntpg.mode6_packet(opcode=2), m7, req()])
    ctl = control_answers(b)
    c.check("nomodify: configure refused with an error, readvar answered, mode 7 unanswered, "
            "time served", b and answered(b, 3) == 1 and len(ctl) == 2 and
            any(x[1] & 0x40 for x in ctl) and any(not x[1] & 0x40 for x in ctl),
            b and [(len(x), hex(x[1])) for x in ctl])
    r.counters("nomodify (configure and readvar reach the control path)",
               {MODE6: 2, "dropped_mode7": 1, "served": 1})

    b = r.burst(src(10), [m6, m7])
    c.check("no flags: the mode 6 request answered, mode 7 not", answered(b) == 1 and
            len(control_answers(b)) == 1, answered(b))
    r.counters("no flags: mode 6 and mode 7 requests", {MODE6: 1, "dropped_mode7": 1})

    sym = ntpg.build_packet(vn=4, mode=1, poll=6, precision=-20)
    b = r.burst(src(8), [sym, sym[:40] + os.urandom(8), req()])
    c.check("nopeer: mode 1 unanswered, mode 3 served",
            b and [answered(b, i) for i in range(3)] == [0, 0, 1],
            b and [answered(b, i) for i in range(3)])
    r.counters("nopeer", {"dropped_symmetric": 2, "served": 1})

    b = r.burst(src(9), [req(), req()], src_port=123)
    if b is None:
        c.skip("ntpport: from source port 123", "could not bind %s:123" % src(9))
    else:
        c.check("ntpport noserve: source port 123 refused", answered(b) == 0, answered(b))
        b = r.burst(src(9), [req()])
        c.check("ntpport noserve: an ephemeral source port is served", answered(b) == 1,
                answered(b))
        r.counters("ntpport", {"dropped_noserve": 2, "served": 1})

    p = [req()]
    b = r.burst(src(11), p)
    plain = r.burst(src(10), [req()])
    ref = ntpg.decode(b["replies"][0][0])["ref"] if b and b["replies"][0] else None
    ref0 = ntpg.decode(plain["replies"][0][0])["ref"] if plain and plain["replies"][0] else None
    c.check("serverresponse fuzz: reference time with zero fraction and low 6 bits of seconds",
            ref is not None and ref & 0x3FFFFFFFFF == 0 and ref0 is not None and
            ref0 >> 38 == ref >> 38, "%s vs unfuzzed %s" % (ref and hex(ref), ref0 and hex(ref0)))
    r.counters("fuzz", {"served": 2})

    # flake: statistical. 600 requests from 8 sources in the flake /29 (not rate limited)
    n = 600  # P(outside 5%..20%) < 1e-5 (200 would fail 1 run in 300)
    dgs = [req() for _ in range(n)]
    recs, probes, fails = ntpg.exchange(r.addr, 123, dgs, [src(k) for k in range(16, 24)],
                                        r.probe, chunk=40)
    r.barriers += probes  # every probe query sent is served, answered in time or not
    got = sum(1 for x in recs if x["replies"])
    lost = n - got
    c.check("flake: between 5%% and 20%% of %d requests dropped" % n,
            0.05 * n <= lost <= 0.20 * n and fails == 0, "%d dropped (%.1f%%)" %
            (lost, 100.0 * lost / n))
    ntpg.SIZES.extend((len(x["data"]), len(y)) for x in recs for y in x["replies"])
    dl = r.delta()
    if dl is not None:
        c.check("flake: dropped_flake counts exactly the unanswered ones",
                dl.get("dropped_flake") == lost, "dropped_flake +%s" % dl.get("dropped_flake"))
    r.stop()


# ---------------------------------------------------------------------------------------------
# 1b. the same flags as real clients see them (ntpdig, ntplib come from 127.0.0.1)
# ---------------------------------------------------------------------------------------------

def section_flags_clients(c, tmp):
    c.section("flags seen by ntpdig and ntplib (source 127.0.0.1)")

    r = daemon(c, tmp, "cl-ignore", 2, ["restrict localhost ignore"])
    if r.start():
        a = ntpg.run_ntpdig(r.addr, timeout=1)
        b = ntpg.run_ntplib(r.addr, 123, timeout=0.3)
        c.check("`restrict localhost ignore`: ntpdig and ntplib get nothing",
                no_reply(a) and no_reply(b), "ntpdig %s; ntplib %s" % (brief(a), brief(b)))
        rr = r.burst(src(3), [req()])
        c.check("`restrict localhost ignore`: other sources served", answered(rr) == 1)
        r.counters("host name ignore", {"dropped_ignore": 2, "served": 1})
        r.stop()

    r = daemon(c, tmp, "cl-noserve", 3, ["restrict default noserve"])
    if r.start():
        a = ntpg.run_ntpdig(r.addr, timeout=1)
        b = ntpg.run_ntplib(r.addr, 123, timeout=0.3)
        c.check("`restrict default noserve`: ntpdig and ntplib get nothing",
                no_reply(a) and no_reply(b), "ntpdig %s; ntplib %s" % (brief(a), brief(b)))
        r.counters("default noserve", {"dropped_noserve": 2})
        r.stop()

    r = daemon(c, tmp, "cl-notrust", 4, ["restrict 127.0.0.1 notrust"])
    if r.start():
        b = ntpg.run_ntplib(r.addr, 123, timeout=0.3)
        c.check("`restrict 127.0.0.1 notrust`: ntplib (no MAC) gets nothing", no_reply(b),
                brief(b))
        r.counters("notrust", {"dropped_notrust": 1})
        r.stop()

    r = daemon(c, tmp, "cl-version", 5, ["restrict 127.0.0.0/8 version"])
    if r.start():
        a = ntpg.run_ntpdig(r.addr, timeout=1)
        c.check("`version`: ntpdig (NTPv4) served", a.get("stratum") == STRATUM, brief(a))
        b3 = ntpg.run_ntplib(r.addr, 123, version=3, timeout=0.3)
        b4 = ntpg.run_ntplib(r.addr, 123, version=4, timeout=1)
        c.check("`version`: ntplib NTPv3 gets nothing, NTPv4 served",
                no_reply(b3) and b4.get("stratum") == STRATUM,
                "v3 %s; v4 %s" % (brief(b3), brief(b4)))
        r.counters("version", {"dropped_version": 1, "served": 2})
        r.stop()

    r = daemon(c, tmp, "cl-served", 6, ["restrict default noquery nomodify nopeer notrap "
                                        "lowpriotrap nomrulist"])
    if r.start():
        a = ntpg.run_ntpdig(r.addr, timeout=1)
        b = ntpg.run_ntplib(r.addr, 123, timeout=1)
        c.check("noquery nomodify nopeer notrap lowpriotrap nomrulist: time still served "
                "(ntpdig, ntplib)", a.get("stratum") == STRATUM and b.get("stratum") == STRATUM,
                "ntpdig %s; ntplib %s" % (brief(a), brief(b)))
        r.counters("query flags only", {"served": 2})
        r.stop()


# ---------------------------------------------------------------------------------------------
# rate limiting without kod
# ---------------------------------------------------------------------------------------------

def section_limited(c, tmp):
    c.section("limited (no kod; discard leak 0 so every outcome is exact)")
    r = daemon(c, tmp, "limited", 7, ["restrict default limited", "discard leak 0"])
    if r.start():
        p = [req(), req()]
        b = r.burst(src(1), p)
        c.check("limited: 1st packet served, 2nd (< 0.5 s later) dropped",
                b and [answered(b, i) for i in range(2)] == [1, 0],
                b and [answered(b, i) for i in range(2)])
        b = r.burst(src(2), [req(), req()], gap=0.9)
        c.check("limited: 2 packets 0.9 s apart both served (rounds to 1 s: minimum 2 met)",
                b and [answered(b, i) for i in range(2)] == [1, 1],
                b and ([answered(b, i) for i in range(2)], round(b["elapsed"], 2)))
        b = r.burst(src(2), [req()])
        c.check("limited: a 3rd right after is dropped", answered(b) == 0, answered(b))
        r.counters("limited", {"served": 3, "dropped_limited": 2})
        r.stop()

    r = daemon(c, tmp, "limited-avg", 8, ["restrict default limited",
                                          "discard minimum 0 leak 0"])
    if r.start():
        a = ntpg.run_ntpdig(r.addr, timeout=1)
        c.check("limited (minimum 0): ntpdig's first request served",
                a.get("stratum") == STRATUM, brief(a))
        b = r.burst("127.0.0.1", [req() for _ in range(10)])
        c.check("limited (minimum 0): 10 more from 127.0.0.1 at once served (11 in all)",
                answered(b) == 10, answered(b))
        n = ntpg.run_ntplib(r.addr, 123, timeout=0.3)
        c.check("limited (minimum 0): the 12th, from ntplib, is dropped (average 3: leak 60+8"
                " >= 64)", no_reply(n), brief(n))
        ps = [req() for _ in range(14)]
        b = r.burst(src(3), ps)
        got = [answered(b, i) for i in range(14)] if b else None
        c.check("limited (minimum 0): a flood of 14 gets exactly the first 11 served",
                got == [1] * 11 + [0] * 3, got)
        r.counters("limited, average", {"served": 22, "dropped_limited": 4})
        r.stop()


# ---------------------------------------------------------------------------------------------
# 2. overlapping masks, prefixes, unrestrict/delrestrict; IPv6
# ---------------------------------------------------------------------------------------------

def section_overlap(c, tmp):
    c.section("overlapping masks: the most specific entry wins, whatever the line order")
    t = ntpg.test_number()
    net = lambda last: "127.78.%d.%d" % (t, BASE + last)  # noqa: E731
    lines = [
        "restrict %s noserve" % net(30),                          # host, inside the /29
        "restrict %s mask 255.255.255.248" % net(24),             # /29 24..31: served again
        "restrict %s/28 noserve" % net(16),                       # /28 16..31: refused
        "restrict %s noserve" % net(9), "delrestrict %s" % net(9),
        "restrict %s noserve version" % net(10), "unrestrict %s noserve" % net(10),
        "restrict default noserve",
        "restrict 127.78.0.0 mask 255.255.0.0",                   # all our sources: served
    ]
    r = daemon(c, tmp, "overlap", 9, lines)
    if not r.start():
        return
    want = {5: True, 17: False, 23: False, 25: True, 30: False, 29: True, 9: True, 10: True}
    got = {}
    for k in want:
        b = r.burst(src(k), [req()])
        got[k] = answered(b) == 1
    c.check("sources served / refused as the most specific entry says", got == want,
            " ".join("%s:%s" % (src(k), "served" if got[k] else "refused") for k in sorted(got)),
            why="expected %s" % want)
    b = r.burst(src(10), [req(vn=3)])
    c.check("unrestrict cleared only noserve: %s v3 still refused by `version`" % src(10),
            answered(b) == 0, answered(b))
    b = r.burst("127.0.0.1", [req()])
    c.check("127.0.0.1 (outside 127.78/16) refused by `default noserve`", answered(b) == 0)
    r.counters("overlap", {"served": 5, "dropped_noserve": 4, "dropped_version": 1})
    q = ntpg.run_chronyd_q(tmp, r.addr, 123, src=src(5), timeout=6)
    c.check("chronyd -Q from %s (127.78/16 entry) is served" % src(5),
            q.get("stratum") == STRATUM, brief(q))
    r.stop()

    c.section("IPv6 ::1: -6 default ignore, restrict ::1")
    port = ntpg.v6_port(0)
    v4 = ntpg.server_addr(10)
    lines6 = ["restrict -6 default ignore", "restrict ::1", "restrict -4 default noserve"]
    r = daemon(c, tmp, "v6", 10, lines6, listen=[v4, "::1"], port=port)
    if not r.start():
        return
    a = ntpg.run_ntpdig("::1", port=port, timeout=1)
    n = ntpg.run_ntplib("::1", port, timeout=1)
    c.check("::1 served (restrict ::1 beats -6 default ignore): ntpdig and ntplib",
            a.get("stratum") == STRATUM and n.get("stratum") == STRATUM,
            "ntpdig %s; ntplib %s" % (brief(a), brief(n)))
    b = r.burst(src(3), [req()])
    c.check("IPv4 source refused by -4 default noserve", answered(b) == 0, answered(b))
    r.counters("v6", {"served": 2, "dropped_noserve": 1})
    b = r.burst("::1", [req()], src_port=123, addr="::1")
    if b is None:
        c.skip("from [::1]:123", "could not bind [::1]:123 (in use)")
    else:
        c.check("from [::1] port 123: the interface self-block (ignore, ntpport) beats "
                "`restrict ::1`", answered(b) == 0, answered(b))
        r.counters("[::1]:123", {"dropped_ignore": 1})
    r.write_config(["restrict -6 default ignore", "restrict -4 default noserve"])
    if reload_ok(c, r, "v6 reload without `restrict ::1`"):
        n = ntpg.run_ntplib("::1", port, timeout=0.3)
        b = r.burst("::1", [req()], addr="::1")
        c.check("after reload ::1 is ignored (ntplib, raw)", no_reply(n) and answered(b) == 0,
                "ntplib %s, raw %s" % (brief(n), answered(b)))
        r.counters("v6 ignored", {"dropped_ignore": 2})
    r.stop()


def reload_ok(c, r, label):
    """SIGHUP and wait (bounded) for the log to say how the reload went."""
    size = len(r.d.log_text())
    r.d.send_signal(signal.SIGHUP)
    done = ntpg.wait_until(lambda: re.search(r"configuration reloaded|reload failed",
                                             r.d.log_text()[size:]), 10, 0.02)
    tail = r.d.log_text()[size:]
    return c.check("%s: `configuration reloaded` logged" % label,
                   done and "configuration reloaded" in tail, why=r.d.log_diag(size))


# ---------------------------------------------------------------------------------------------
# 4. the bug 1331 loop: control responses are never answered, from anywhere
# ---------------------------------------------------------------------------------------------

def ctl_responses():
    return [ntpg.mode6_packet(r=True), ntpg.mode6_packet(e=True), ntpg.mode6_packet(m=True),
            ntpg.mode6_packet(r=True, e=True, data=b"error"), ntpg.mode6_packet(offset=468),
            ntpg.mode7_packet(r=True), ntpg.mode7_packet(m=True),
            ntpg.mode7_packet(r=True, m=True, request=20)]


def section_loop(c, tmp):
    c.section("spoofed-self loop (bug 1331): mode 6/7 responses never answered; early drops")
    r = daemon(c, tmp, "loop", 11, ["restrict %s ignore" % src(2), "restrict %s noquery" % src(3)])
    if not r.start():
        return
    resp = ctl_responses()
    total = 0
    for k in (1, 2, 3):
        b = r.burst(src(k), resp)
        total += len(resp)
        c.check("%d mode 6/7 responses from %s (%s) get no reply" % (
            len(resp), src(k), {1: "no flags", 2: "ignore", 3: "noquery"}[k]),
            answered(b) == 0, answered(b))
    r.counters("responses from 3 sources", {"dropped_ctl_response": total})

    b = r.burst("127.0.0.1", [req(), ntpg.mode6_packet(opcode=2)] + resp, src_port=123)
    if b is None:
        c.skip("from 127.0.0.1 port 123", "could not bind 127.0.0.1:123 (in use)")
    else:
        c.check("from 127.0.0.1 port 123 (our own interface, ntpport self-block): a request, "
                "a control request and %d responses get no reply" % len(resp),
                answered(b) == 0, answered(b))
        r.counters("127.0.0.1:123", {"dropped_ignore": 2, "dropped_ctl_response": len(resp)})

    # forged from the daemon's own address and port to itself: an answer would loop forever
    sent, why = 0, None
    for p in resp[:1] + resp[3:4] + resp[5:6]:
        err = ntpg.send_spoofed(r.addr, 123, r.addr, 123, p)
        sent, why = (sent, err) if err else (sent + 1, why)
    if sent == 0:
        c.skip("forged from the daemon's own address", "raw socket: %s" % why)
    else:
        ok, probes = ntpg.barrier(r.addr, 123, r.probe)
        time.sleep(0.3)  # a loop, if any, would be spinning by now
        r.barriers += probes
        dl = r.delta()
        if dl is not None:
            c.check("%d responses forged from %s:123 to itself: each received once, none "
                    "answered (no loop)" % (sent, r.addr),
                    ok and dl.get("received") == sent + probes and
                    dl.get("replied") == probes,
                    "received +%s replied +%s" % (dl.get("received"), dl.get("replied")))
            r.counters("forged self", {"dropped_ctl_response": sent}, dl)

    # the checks before any restrict lookup: empty datagram, source port 0, multicast source
    b = r.burst(src(4), [b""])
    c.check("an empty datagram gets no reply", answered(b) == 0, answered(b))
    r.counters("empty", {"dropped_empty": 1})
    err = ntpg.send_spoofed(src(4), 0, r.addr, 123, req())
    err = err or ntpg.send_spoofed("224.0.1.1", 123, r.addr, 123, req())
    if err:
        c.skip("source port 0, multicast source", "raw socket: %s" % err)
    else:
        ok, probes = ntpg.barrier(r.addr, 123, r.probe)
        r.barriers += probes
        dl = r.delta()
        if dl is not None:
            mcast = dl.get("received", 0) - probes - 1  # the kernel may drop a martian source
            c.info("multicast source %s by the kernel" % ("delivered" if mcast else "dropped"))
            r.counters("forged source port 0 (and multicast source if delivered)",
                       {"dropped_port0": 1, "dropped_mcast_src": mcast}, dl)
            c.check("no reply to either", ok and dl.get("replied") == probes,
                    "replied +%s" % dl.get("replied"))
    c.check("loop: daemon still running", r.d.alive())
    r.stop()


# ---------------------------------------------------------------------------------------------
# 5. SIGHUP reload
# ---------------------------------------------------------------------------------------------

def section_reload(c, tmp):
    c.section("SIGHUP: restrictions change without a restart, the monitor table survives")
    t = ntpg.test_number()
    net = "127.78.%d.%d mask 255.255.255.240" % (t, BASE)  # sources 0..15
    client = src(5)
    r = daemon(c, tmp, "reload", 12, ["restrict %s noserve kod" % net])
    if not r.start():
        return
    for k in range(16, 22):  # a few sources outside the /28, served and monitored
        r.burst(src(k), [req()])
    b = r.burst(client, [req()])
    kod = b["replies"][0][0] if b and b["replies"][0] else b""
    c.check("before reload: %s gets a DENY KoD (noserve kod)" % client,
            answered(b) == 1 and ntpg.is_kod(kod, "DENY"), kod[12:16])
    s0 = r.counters("before reload", {"served": 6, "kod_deny": 1})
    e0 = r.snap.get("mon_entries", 0) if s0 is not None else 0
    pid = r.d.pid

    r.write_config([])
    if reload_ok(c, r, "good reload"):
        b = r.burst(client, [req()])
        q = ntpg.run_chronyd_q(tmp, r.addr, 123, src=src(6), timeout=6)
        c.check("after reload: %s served (raw) and chronyd -Q from %s served" % (client, src(6)),
                answered(b) == 1 and not ntpg.is_kod(b["replies"][0][0]) and
                q.get("stratum") == STRATUM,
                "raw %s, chronyd %s" % (answered(b), brief(q)))
        dl = r.delta()
        e1 = r.snap.get("mon_entries", 0) if dl is not None else 0
        c.check("same process (pid %d), monitor table kept: mon_entries %d -> %d (+1 for %s)" % (
            pid, e0, e1, src(6)), r.d.pid == pid and r.d.alive() and e0 >= 7 and e1 == e0 + 1,
            why="the entries from before the reload must survive")

    lines = r.config_text(["restrict %s ignore" % net,
                           "restrict 127.78.%d.0 mask 255.255.0.255 ignore" % t])
    lines = lines.splitlines()
    bad_line = 1 + next(i for i, x in enumerate(lines) if "255.255.0.255" in x)
    r.d.write_config(text="\n".join(lines) + "\n")
    size = len(r.d.log_text())
    r.d.send_signal(signal.SIGHUP)
    mark = "%s:%d:" % (r.d.conf, bad_line)
    logged = ntpg.wait_until(lambda: "reload failed" in r.d.log_text()[size:], 10, 0.02)
    tail = r.d.log_text()[size:]
    c.check("bad reload (a mask with holes) logged as %s ... and `reload failed`" % mark,
            logged and mark in tail, why=r.d.log_diag(size))
    b = r.burst(client, [req()])
    c.check("after the bad reload the old restrictions stay: %s still served, not ignored" %
            client, answered(b) == 1 and r.d.alive(), answered(b))
    dl = r.counters("after bad reload", {"served": 1})
    if dl is not None:
        c.check("monitor table kept after the bad reload", r.snap.get("mon_entries", 0) >= e0)
    r.stop()


def section_sizes(c):
    c.section("never larger than the request")
    longer = [(q, a) for q, a in ntpg.SIZES if a > q]
    ctl = [(q, a) for q, a in ntpg.CONTROL_SIZES if a > max(480, 3 * q)]
    c.check("all %d mode 6 answers within max(480, 3 x request)" % len(ntpg.CONTROL_SIZES),
            not ctl, ctl)
    c.check("all %d replies seen were no longer than their requests" % len(ntpg.SIZES),
            ntpg.SIZES and not longer, why="longer: %s" % longer[:5])


def main(c, tmp):
    if ntpg.STANDIN:
        c.skip("access control", "ntpgated restrict syntax and counters; stand-in %s" %
               ntpg.STANDIN)
        return
    t0 = time.monotonic()
    section_flags_raw(c, tmp)
    section_flags_clients(c, tmp)
    section_limited(c, tmp)
    section_overlap(c, tmp)
    section_loop(c, tmp)
    section_reload(c, tmp)
    section_sizes(c)
    c.info("took %.1f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    ntpg.run(main)
