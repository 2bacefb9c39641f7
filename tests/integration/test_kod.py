"""Kiss-o'-Death (issue 3): DENY (noserve kod, notrust kod), RSTR (version kod), RATE (limited
kod) and CRYP (a MAC that cannot verify, with kod) checked field by field against the format
ntpd sends (48 octets, LI 3, stratum 0, the code as refid, the request's version, mode 4,
origin = receive = transmit = the request's transmit timestamp, poll = max(request poll,
discard average), the rest echoed); what ntpdig, ntplib and chronyd -Q make of them; the
per-source limit on refusals (a flood gets two KoDs, then silence); no KoD ever to mode 1, 2,
4 or 5; `kod` without `limited` (warned about at start, sends no RATE); the global KoD limit
(`discard kodlimit`, 1 per second by default) under a flood from many sources while a polite
client is served; and the leak (1 in 2^L over-limit requests still served). Every reply seen
is no longer than its request."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

STRATUM = 6
PROBE_K = 31
AVERAGE = 3  # discard average (log2 s) unless a config says otherwise
KOD_WARNING = "'kod' without 'limited' sends no RATE KoDs"


def src(k):
    return ntpg.source_addr(k)


def daemon(c, tmp, name, k, extra, **kw):
    return ntpg.AccessDaemon(c, tmp, name, k, extra, stratum=STRATUM, probe_k=PROBE_K, **kw)


def req(vn=4, poll=0, mode=3, trailer=b""):
    """A request whose header fields a KoD must echo are all distinctive."""
    return ntpg.build_packet(vn=vn, mode=mode, poll=poll, precision=-20, rootdelay=0x00012345,
                             rootdisp=0x00006789, refid=0x58595A57,
                             ref=ntpg.unix_to_ntp(time.time() - 1000), trailer=trailer)


def replies(b, i):
    return b["replies"][i] if b else []


def served_ok(raw, request):
    d = ntpg.decode(raw)
    return bool(d) and d["mode"] == 4 and d["stratum"] == STRATUM and d["li"] == 0 and \
        raw[24:32] == request[40:48] and len(raw) <= len(request)


def check_kod(c, label, b, i, request, code, min_poll=AVERAGE):
    reps = replies(b, i)
    if not reps:
        return c.check("%s: %s KoD" % (label, code), False, why="no reply")
    probs = ntpg.kod_problems(request, reps[0], code, min_poll)
    if len(reps) > 1:
        probs.append("%d replies" % len(reps))
    d = ntpg.decode(reps[0])
    return c.check("%s: %s KoD, every field as ntpd sends it" % (label, code), not probs,
                   "%d octets to %d, v%s, poll %s" % (len(reps[0]), len(request),
                                                       d and d["vn"], d and d["poll"]),
                   why="; ".join(probs))


def outcome(b, n):
    """Per packet: '-' nothing, 'S' served, or the KoD code."""
    out = []
    for i in range(n):
        reps = replies(b, i)
        if not reps:
            out.append("-")
        elif ntpg.is_kod(reps[0]):
            out.append(ntpg.decode(reps[0])["refid_str"] or "K?")
        else:
            out.append("S")
    return out


# ---------------------------------------------------------------------------------------------
# KoD formats, per-source limits, modes that never get one; hand-built packets
# ---------------------------------------------------------------------------------------------

def section_formats(c, tmp):
    c.section("KoD formats (discard leak 0 kodlimit 1000: every outcome exact)")
    lines = ["restrict %s noserve kod" % src(1), "restrict %s notrust kod" % src(2),
             "restrict %s version kod" % src(3), "restrict %s limited kod" % src(4),
             "restrict %s limited kod" % src(5), "restrict %s kod" % src(6),
             "restrict %s noserve kod" % src(7), "discard leak 0 kodlimit 1000"]
    r = daemon(c, tmp, "formats", 1, lines)
    if not r.start():
        return
    conf = ntpg.read_text(r.d.conf).splitlines()
    want_warn = {i + 1 for i, x in enumerate(conf) if re.search(r"\bkod\b", x) and
                 "limited" not in x and x.startswith("restrict")}
    text = r.d.stderr_text() + r.d.log_text()
    warned = {int(m) for m in re.findall(re.escape(r.d.conf) + r":(\d+): warning: restrict: " +
                                         re.escape(KOD_WARNING), text)}
    c.check("start-up warning %r as FILE:LINE for every `kod` line without `limited`" %
            KOD_WARNING, warned == want_warn, "lines %s" % sorted(warned),
            why="expected lines %s" % sorted(want_warn))

    # noserve kod: DENY; the per-source limit gives a fresh source two, then silence
    p = [req(vn=4, poll=0), req(vn=3, poll=6), req(vn=4, poll=20)]
    b = r.burst(src(1), p)
    check_kod(c, "noserve kod, v4 poll 0", b, 0, p[0], "DENY")
    check_kod(c, "noserve kod, v3 poll 6", b, 1, p[1], "DENY")
    c.check("noserve kod: the 3rd refusal right after gets nothing (per-source KoD limit)",
            not replies(b, 2), outcome(b, 3))
    flood = [req() for _ in range(10)]
    b = r.burst(src(7), flood)
    got = outcome(b, 10)
    c.check("noserve kod: a flood of 10 from a fresh source gets 2 DENY, then silence",
            got == ["DENY"] * 2 + ["-"] * 8, got)
    r.counters("noserve kod", {"kod_deny": 4, "dropped_kod_limit": 9})

    p = [req(poll=20), req(trailer=ntpg.mac_trailer(1, 16)), req(trailer=ntpg.mac_trailer(9, 20))]
    b = r.burst(src(2), p)
    check_kod(c, "notrust kod, no MAC, poll 20 (capped at 17)", b, 0, p[0], "DENY")
    check_kod(c, "notrust kod, 68-octet request with an unverifiable MAC", b, 1, p[1], "CRYP")
    check_kod(c, "notrust kod, 72-octet request with an unverifiable MAC", b, 2, p[2], "CRYP")
    r.counters("notrust kod", {"kod_deny": 1, "kod_cryp": 2})

    p = [req(vn=3, poll=4), req(vn=1, poll=0), req(vn=4)]
    b = r.burst(src(3), p)
    check_kod(c, "version kod, v3 poll 4", b, 0, p[0], "RSTR")
    check_kod(c, "version kod, v1", b, 1, p[1], "RSTR")
    c.check("version kod: v4 served",
            len(replies(b, 2)) == 1 and served_ok(replies(b, 2)[0], p[2]), outcome(b, 3))
    r.counters("version kod", {"kod_rstr": 2, "served": 1})

    p = [req(), req(poll=0), req(poll=0)]
    b = r.burst(src(4), p)
    c.check("limited kod: 1st request served", outcome(b, 3)[0] == "S", outcome(b, 3))
    check_kod(c, "limited kod, 2nd at once, poll 0 -> 3", b, 1, p[1], "RATE")
    c.check("limited kod: the 3rd gets nothing (one RATE per violation burst)",
            not replies(b, 2), outcome(b, 3))
    p = [req(vn=3), req(vn=3, poll=10)]
    b = r.burst(src(5), p)
    check_kod(c, "limited kod, v3, poll 10", b, 1, p[1], "RATE")
    r.counters("limited kod", {"served": 2, "kod_rate": 2, "dropped_limited": 1})

    others = [req(mode=m) for m in (1, 2, 4, 5)] + [req(mode=4, poll=6)]
    for k, what in ((4, "limited kod, over the limit"), (1, "noserve kod"),
                    (2, "notrust kod"), (3, "version kod")):
        b = r.burst(src(k), [req(mode=m, vn=3) for m in (1, 2, 4, 5)] + others)
        c.check("%s: modes 1, 2, 4, 5 never get a KoD or any reply" % what,
                b and sum(len(x) for x in b["replies"]) == 0 and not b["stray"],
                outcome(b, 9))
    r.counters("modes 1/2/4/5", {"dropped_symmetric": 8, "dropped_response": 28})

    p = [req() for _ in range(20)] + [req(trailer=ntpg.mac_trailer(3, 16))]
    b = r.burst(src(6), p)
    got = outcome(b, 21)
    c.check("kod without limited: 20 at once all served (no RATE)", got[:20] == ["S"] * 20,
            "".join(x[0] for x in got[:20]))
    check_kod(c, "kod without limited, unverifiable MAC", b, 20, p[20], "CRYP")
    r.counters("kod without limited", {"served": 20, "kod_cryp": 1})
    r.stop()


# ---------------------------------------------------------------------------------------------
# what real clients make of our KoDs (ntpdig, ntplib come from 127.0.0.1)
# ---------------------------------------------------------------------------------------------

def ntpdig_kod(addr):
    """ntpdig -d -d: (rc, stdout with hex dumps of request and reply, stderr with verdict)."""
    return ntpg.run_tool([ntpg.NTPDIG, "-d", "-d", "-t", "1", addr], 12)


def kod_line(err):
    lines = [ln for ln in err.splitlines() if "KOD" in ln]
    return lines[0].strip() if lines else err.strip()[-160:]


def dump_refid(out):
    """The refid in ntpdig's hex dumps: rows 0-2 are its request, rows 3-5 the reply, whose
    octets 12-15 (the refid) end row 3."""
    rows = [ln for ln in out.splitlines() if re.match(r"([0-9a-f]{2} ){16}", ln)]
    if len(rows) < 6:
        return None
    row = rows[3].split()
    return bytes(int(x, 16) for x in row[12:16])


def section_clients(c, tmp):
    c.section("KoDs seen by ntpdig, ntplib and chronyd -Q")
    # kodlimit 100: ntplib's KoD comes less than a second after ntpdig's (the global limit
    # is section_kodlimit's business)
    r = daemon(c, tmp, "cl-deny", 2, ["restrict localhost noserve kod", "discard kodlimit 100"])
    if r.start():
        rc, out, err = ntpdig_kod(r.addr)
        c.check("noserve kod: ntpdig reports the KoD (\"probable KOD packet\", exit 1)",
                rc == 1 and "probable KOD packet" in err, "rc %s: %s" % (rc, kod_line(err)))
        c.check("noserve kod: ntpdig's dump of the reply shows refid DENY",
                dump_refid(out) == b"DENY", dump_refid(out))
        n = ntpg.run_ntplib(r.addr, 123, timeout=1)
        c.check("noserve kod: ntplib gets stratum 0, LI 3, refid DENY", "error" not in n and
                n["stratum"] == 0 and n["leap"] == 3 and n["refid"] == b"DENY",
                n.get("error") or (n["stratum"], n["leap"], n["refid"]))
        r.counters("noserve kod, clients", {"kod_deny": 2})
        r.stop()

    r = daemon(c, tmp, "cl-rstr", 3, ["restrict 127.0.0.1 version kod",
                                      "restrict %s noserve kod" % src(3),
                                      "discard average 5 kodlimit 100"])
    if r.start():
        p = [req(poll=0), req(poll=7)]
        b = r.burst(src(3), p)
        check_kod(c, "discard average 5, request poll 0", b, 0, p[0], "DENY", min_poll=5)
        check_kod(c, "discard average 5, request poll 7", b, 1, p[1], "DENY", min_poll=5)
        p = [req(poll=2)]
        b = r.burst(src(4), p)
        d = ntpg.decode(replies(b, 0)[0]) if replies(b, 0) else None
        c.check("discard average 5: a normal reply to poll 2 advertises poll 5",
                d and d["poll"] == 5 and served_ok(replies(b, 0)[0], p[0]), d and d["poll"])
        r.counters("average 5", {"kod_deny": 2, "served": 1})
        n = ntpg.run_ntplib(r.addr, 123, version=3, timeout=1)
        c.check("version kod: ntplib NTPv3 gets stratum 0, LI 3, refid RSTR, version 3",
                "error" not in n and n["stratum"] == 0 and n["leap"] == 3 and
                n["refid"] == b"RSTR" and n["version"] == 3,
                n.get("error") or (n["stratum"], n["leap"], n["refid"], n["version"]))
        a = ntpg.run_ntpdig(r.addr, timeout=1)
        c.check("version kod: ntpdig (NTPv4) served", a.get("stratum") == STRATUM,
                a.get("error", a.get("stratum")))
        r.counters("version kod, clients", {"kod_rstr": 1, "served": 1})
        r.stop()

    r = daemon(c, tmp, "cl-rate", 4, ["restrict default limited kod",
                                      "discard minimum 10 leak 0 kodlimit 100"])
    if r.start():
        a = ntpg.run_ntpdig(r.addr, timeout=1)
        rc, out, err = ntpdig_kod(r.addr)
        c.check("limited kod (minimum 10): ntpdig served, then its next run gets a KoD",
                a.get("stratum") == STRATUM and rc == 1 and "probable KOD packet" in err,
                "1st %s; 2nd rc %s %s" % (a.get("error", a.get("stratum")), rc, kod_line(err)))
        c.check("limited kod: ntpdig's dump shows refid RATE", dump_refid(out) == b"RATE",
                dump_refid(out))
        q = ntpg.run_chronyd_q(tmp, r.addr, 123, src=src(7), timeout=3)
        c.check("limited kod: chronyd -Q logs \"Received KoD RATE\"",
                "Received KoD RATE from %s" % r.addr in q.get("err", ""),
                [ln for ln in q.get("err", "").splitlines() if "KoD" in ln] or
                q.get("err", "")[-200:])
        r.counters("limited kod, clients", {"served": None, "kod_rate": None,
                                            "dropped_limited": "*"})
        r.stop()


# ---------------------------------------------------------------------------------------------
# 3. the global KoD limit under a flood, a polite client served throughout
# ---------------------------------------------------------------------------------------------

def section_kodlimit(c, tmp):
    c.section("global KoD limit (default kodlimit 1/s, leak 4) under a flood from many sources,"
              " default number of serving threads")
    r = daemon(c, tmp, "kodlimit", 5, ["restrict default limited kod"], threads=None)
    if not r.start():
        return
    m = re.findall(r"(\d+) serving threads?", r.d.log_text())
    c.info("%s serving thread(s)" % (m[-1] if m else "?"))
    flooders, stagger, polite = [1, 2], list(range(3, 27)), 30
    socks = {k: ntpg.bind_udp(src(k)) for k in flooders + stagger + [polite]}
    if not c.check("sockets bound for 27 sources", all(socks.values())):
        return
    sent = {k: [] for k in socks}
    dst = (r.addr, 123)

    def send(k, n):
        for _ in range(n):
            p = req()
            socks[k].sendto(p, dst)
            sent[k].append(p)

    # timeline (s): polite at 0, 2, 4; the two flooders (50 each, at once) at 0.05;
    # one staggered source (2 packets, at once) every 0.16 s from 0.1 to about 4
    events = [(0.0, polite, 1), (2.0, polite, 1), (4.0, polite, 1)]
    events += [(0.05, k, 50) for k in flooders]
    events += [(0.1 + 0.16 * i, k, 2) for i, k in enumerate(stagger)]
    events.sort()
    t0 = time.monotonic()
    first = last = None
    for at, k, n in events:  # bounded: one pass over a fixed list
        wait = t0 + at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        send(k, n)
        if k != polite:
            first = first if first is not None else time.monotonic()
            last = time.monotonic()
    ok, probes = ntpg.barrier(r.addr, 123, r.probe)
    r.barriers += probes
    # with several threads the barrier query proves nothing about other sockets: wait until
    # the counters (read between batches) show every datagram received, hence answered
    ok = r.settle(sum(len(v) for v in sent.values()) + probes) is not None and ok
    duration = time.monotonic() - first  # every packet was handled within this window
    c.info("sent for %.2f s, all handled within %.2f s" % (last - first, duration))
    kods, leaked, leaked2, bad, polite_served = 0, 0, 0, [], 0
    for k, s in socks.items():
        by_nonce = {p[40:48]: p for p in sent[k]}
        for raw in ntpg.recv_all(s):
            p = by_nonce.get(raw[24:32])
            ntpg.SIZES.append((len(p) if p else 48, len(raw)))
            if p is None:
                bad.append("%s: stray reply" % src(k))
            elif ntpg.is_kod(raw):
                probs = ntpg.kod_problems(p, raw, "RATE", AVERAGE)
                kods += 1
                if probs or k == polite:
                    bad.append("%s: %s" % (src(k), probs or "KoD to the polite source"))
            elif served_ok(raw, p):
                if k == polite:
                    polite_served += 1
                elif p is not sent[k][0]:
                    leaked += 1
                    leaked2 += 1 if p is sent[k][1] else 0
            else:
                bad.append("%s: odd reply %r" % (src(k), ntpg.decode(raw)))
        s.close()
    limit = int(duration) + 1
    c.check("RATE KoDs during the %.1f s flood: at most %d (1/s, burst 1)" % (duration, limit),
            1 <= kods <= limit, "%d KoDs" % kods)
    c.check("KoDs keep coming at the limit's pace: at least 2", kods >= 2, kods)
    c.check("polite source (1 request every 2 s) served 3 of 3", polite_served == 3,
            polite_served)
    c.check("every reply is a RATE KoD or a normal reply", not bad and ok, bad[:4])
    over = sum(len(v) - 1 for k, v in sent.items() if k != polite)
    dl = r.delta()
    if dl is not None:
        c.info("counters: " + ", ".join("%s +%d" % (k, v) for k, v in sorted(dl.items())
                                        if v and (k.startswith(("dropped", "kod", "served")))))
        c.check("kod_rate counts the KoDs seen (%d)" % kods, dl.get("kod_rate") == kods,
                dl.get("kod_rate"))
        c.check("served_leak counts the leaked replies seen (%d)" % leaked,
                dl.get("served_leak") == leaked, dl.get("served_leak"))
        c.check("the first packet of each of the 27 sources served",
                dl.get("served") == len(socks) + 2, dl.get("served"))
        acc = sum(dl.get(x, 0) for x in ("kod_rate", "served_leak", "dropped_kod_limit",
                                         "dropped_limited"))
        c.check("every over-limit request (%d) is a KoD, a leak, or dropped (kod limit or "
                "limited)" % over, acc == over, acc)
        due = len(stagger) + len(flooders) - leaked2  # 2nd packets not leaked: KoD due
        c.check("the %d due KoDs the global limit refused (%d - %d sent) are dropped_kod_limit"
                % (due - kods, due, kods), dl.get("dropped_kod_limit") == due - kods,
                dl.get("dropped_kod_limit"))
    r.stop()


# ---------------------------------------------------------------------------------------------
# the leak, and kodlimit 0
# ---------------------------------------------------------------------------------------------

def section_leak(c, tmp):
    c.section("leak (discard leak 1: half the over-limit requests served) and kodlimit 0")
    r = daemon(c, tmp, "leak", 6, ["restrict %s limited" % src(1),
                                   "restrict %s limited kod" % src(2),
                                   "discard leak 1 kodlimit 0"])
    if not r.start():
        return
    p = [req() for _ in range(81)]
    b = r.burst(src(1), p)
    got = outcome(b, 81)
    leaked = got[1:].count("S")
    c.check("leak 1: first served, then between 15 and 65 of 80 over-limit served",
            got[0] == "S" and 15 <= leaked <= 65 and all(x in "S-" for x in got), leaked)
    dl = r.counters("leak", {"served": 1, "served_leak": leaked, "dropped_limited": 80 - leaked})
    p = [req() for _ in range(20)]
    b = r.burst(src(2), p)
    got = outcome(b, 20)
    c.check("kodlimit 0: `limited kod` flood gets no KoD at all", all(x in "S-" for x in got),
            "".join(got))
    dl = r.delta()
    if dl is not None:
        c.check("kodlimit 0: kod_rate +0, the due KoD counted as dropped_kod_limit",
                dl.get("kod_rate") == 0 and dl.get("dropped_kod_limit", 0) in (0, 1) and
                dl.get("dropped_kod_limit", 0) + dl.get("served_leak", 0) +
                dl.get("dropped_limited", 0) == 19,
                {k: v for k, v in dl.items() if v and k.startswith(("kod", "dropped", "served"))})
    r.stop()


def section_sizes(c):
    c.section("never larger than the request")
    longer = [(q, a) for q, a in ntpg.SIZES if a > q]
    c.check("all %d replies and KoDs seen were no longer than their requests" %
            len(ntpg.SIZES), ntpg.SIZES and not longer, why="longer: %s" % longer[:5])


def main(c, tmp):
    if ntpg.STANDIN:
        c.skip("Kiss-o'-Death", "ntpgated restrict syntax and counters; stand-in %s" %
               ntpg.STANDIN)
        return
    t0 = time.monotonic()
    section_formats(c, tmp)
    section_clients(c, tmp)
    section_kodlimit(c, tmp)
    section_leak(c, tmp)
    section_sizes(c)
    c.info("took %.1f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    ntpg.run(main)
