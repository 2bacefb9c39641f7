"""Hostile and odd datagrams, from several source addresses: every length 0-47, every version
0-7 x mode 0-7 in a 48-octet header, and random datagrams up to 1,400 octets (fixed, printed
seed; rerun with `-s SEED` or NTPG_SEED). Every reply is recorded with its size: no reply is
longer than the datagram it answers, only well-formed requests of a mode the daemon serves (3)
and versions 1-4 get one, and a reply is mode 4 with the request's version and origin.
Afterwards the daemon still answers a normal client, is still running, and its counters account
for every datagram (received = replied + dropped_*)."""

import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

STRATUM = 4
DEFAULT_SEED = 20261122
N_RANDOM = 400
N_SOURCES = 8
REQUIRED_VERSIONS = (3, 4)  # a server that ignores these is not serving


def seed_from_args():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "-s":
        return int(args[1])
    return int(os.environ.get("NTPG_SEED", DEFAULT_SEED))


def may_answer(d, data):
    """May the daemon reply at all to this datagram (RFC 5905 sections 7.3 and 9.2, RFC 7822)?"""
    if len(data) < 48:
        return False
    return d.reply_mode((data[0] >> 3) & 7, data[0] & 7) is not None


def control_request(data):
    """A well-formed mode 6 request (version 1-4, R/E/M clear, offset 0): the control path
    may answer it, within its own bound (docs/control.md)."""
    return len(data) >= 12 and data[0] & 7 == 6 and 1 <= (data[0] >> 3) & 7 <= 4 and \
        not data[1] & 0xe0 and data[8:10] == b"\0\0"


def bad_control_reply(data, reply):
    if len(reply) > max(480, 3 * len(data)):
        return "mode 6 answer %d octets > max(480, 3 x %d)" % (len(reply), len(data))
    if len(reply) < 12 or reply[0] & 7 != 6 or not reply[1] & 0x80:
        return "mode 6 answer without the response bit"
    if reply[1] & 0x1f != data[1] & 0x1f or reply[2:4] != data[2:4]:
        return "mode 6 answer with another opcode or sequence"
    return ""


def bad_reply(d, data, reply):
    """Why a reply to `data` is wrong, or '' if it is acceptable."""
    if d.is_ntpgated and control_request(data):
        return bad_control_reply(data, reply)
    if len(reply) > len(data):
        return "reply %d octets > request %d octets" % (len(reply), len(data))
    if not may_answer(d, data):
        return "reply to a datagram that must be dropped (len %d, byte0 0x%02x)" % (
            len(data), data[0] if data else 0)
    rep = ntpg.decode(reply)
    if rep is None:
        return "reply shorter than 48 octets (%d)" % len(reply)
    vn, mode = (data[0] >> 3) & 7, data[0] & 7
    if rep["mode"] != d.reply_mode(vn, mode):
        return "reply mode %d to request mode %d" % (rep["mode"], mode)
    if rep["vn"] != vn:
        return "reply version %d to request version %d" % (rep["vn"], vn)
    if reply[24:32] != data[40:48]:
        return "origin is not the request's transmit timestamp"
    return ""


def describe(rec):
    data = rec["data"]
    return "#%d from %s len %d byte0 0x%02x -> %s" % (
        rec["index"], rec["src"], len(data), data[0] if data else 0,
        [len(r) for r in rec["replies"]])


def check_records(c, d, label, records):
    """The checks every batch shares; returns the number of replies seen."""
    offenders = []
    multi = []
    for rec in records:
        if len(rec["replies"]) > 1:
            multi.append(describe(rec))
        for rep in rec["replies"]:
            why = bad_reply(d, rec["data"], rep)
            if why:
                offenders.append("%s: %s" % (describe(rec), why))
    longer = [o for o in offenders if "> request" in o]
    c.check("%s: no reply longer than its datagram" % label, not longer,
            why="; ".join(longer[:5]) + (" (+%d more)" % (len(longer) - 5)
                                          if len(longer) > 5 else ""))
    c.check("%s: every reply allowed and well-formed (mode, version, origin)" % label,
            not offenders, why="%d bad: %s" % (len(offenders), "; ".join(offenders[:5])))
    c.check("%s: at most one reply per datagram" % label, not multi, why="; ".join(multi[:5]))
    return sum(len(r["replies"]) for r in records)


def main(c, tmp):
    seed = seed_from_args()
    random.seed(seed)
    rng = random.Random(seed)
    c.info("seed %d (rerun: %s %s -s %d)" % (seed, ntpg.PYTHON, sys.argv[0], seed))
    addr = ntpg.server_addr(1)
    sources = [ntpg.source_addr(k) for k in range(1, N_SOURCES + 1)]
    probe_src = ntpg.source_addr(30)
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=STRATUM, name="d")
    if not c.check("daemon answers on %s port 123" % addr, d.start(),
                   why="rc %s; stderr: %s" % (d.rc, d.stderr_text()[-400:])):
        return
    before = d.stats() if d.is_ntpgated else None
    sent = probes = probes_answered = replies = control_replies = 0

    def batch(label, datagrams):
        nonlocal sent, probes, probes_answered, replies, control_replies
        records, p, fails = ntpg.exchange(addr, 123, datagrams, sources, probe_src)
        sent += len(datagrams)
        probes += p
        probes_answered += p - fails  # every barrier query (mode 6 chunks send two) is served
        c.check("%s: daemon answered every barrier query" % label, fails == 0,
                why="%d barriers unanswered" % fails)
        replies += check_records(c, d, label, records)
        control_replies += sum(len(r["replies"]) for r in records
                               if d.is_ntpgated and control_request(r["data"]))
        return records

    c.section("every length 0-47 (a v4 client request cut short)")
    full = ntpg.client_request(vn=4)
    records = batch("lengths 0-47", [full[:n] for n in range(48)])
    got = [describe(r) for r in records if r["replies"]]
    c.check("lengths 0-47: no replies at all", not got, why="; ".join(got[:5]))

    c.section("every version 0-7 x mode 0-7 in a 48-octet header")
    grid = [(vn, mode) for vn in range(8) for mode in range(8)]
    records = batch("version x mode", [ntpg.build_packet(vn=vn, mode=mode, precision=0x20)
                                       for vn, mode in grid])
    answered = {g for g, r in zip(grid, records) if r["replies"]}
    for vn in range(8):
        c.info("v%d modes answered: %s" % (vn, [m for m in range(8) if (vn, m) in answered]
                                            or "none"))
    allowed = {g for g in grid if d.reply_mode(*g) is not None}
    if d.is_ntpgated:  # mode 6 requests get control answers (an error for opcode 0)
        allowed |= {(vn, 6) for vn in (1, 2, 3, 4)}
    c.check("version x mode: replies only to mode %s (and control mode 6) with version 1-4" %
            "/".join(str(m) for m in d.served_modes), answered <= allowed,
            why="unexpected: %s" % sorted(answered - allowed))
    required = {(vn, 3) for vn in REQUIRED_VERSIONS}
    c.check("version x mode: v3 and v4 mode 3 answered", required <= answered,
            why="missing: %s" % sorted(required - answered))
    c.info("optional versions answered in mode 3: %s" %
           [vn for vn in range(8) if (vn, 3) in answered])

    c.section("%d random datagrams up to 1400 octets (seed %d)" % (N_RANDOM, seed))
    datagrams = []
    for i in range(N_RANDOM):
        kind = i % 4
        if kind < 2:
            n = rng.randrange(0, 1401)
        elif kind == 2:
            n = rng.randrange(48, 121)
        else:  # half of them a bare 48-octet header: random fields, but a valid request
            n = 48 if rng.getrandbits(1) else rng.randrange(48, 1401)
        data = bytearray(rng.getrandbits(8) for _ in range(n))
        if kind == 3 and n:
            data[0] = 0x23  # a v4 client request with a random body and trailer
        datagrams.append(bytes(data))
    records = batch("random", datagrams)
    answered = [r for r in records if r["replies"]]
    c.info("random: %d of %d answered (%d were >= 48 octets, mode 3, v1-4)" % (
        len(answered), len(records), sum(1 for r in records if may_answer(d, r["data"]))))
    for r in answered[:8]:
        c.info("answered " + describe(r))

    c.section("afterwards")
    c.check("daemon still running", d.alive(), why="exit status %s" % d.rc)
    r = ntpg.run_ntplib(addr, 123)
    c.check("normal ntplib request still answered with stratum %d" % STRATUM,
            "error" not in r and r["stratum"] == STRATUM, r.get("error", r.get("stratum")))
    if "error" not in r:
        probes += 1
        probes_answered += 1
    c.info("sent %d datagrams + %d probes (%d answered); saw %d replies" %
           (sent, probes, probes_answered, replies))

    if not d.is_ntpgated:
        c.skip("counters", "the %s stand-in has no stats: lines" % d.kind)
    else:
        after = d.stats()
        if c.check("stats: counters readable before and after (SIGUSR1)",
                   before is not None and after is not None,
                   why="before %s after %s; %s" % (before, after, d.log_diag())):
            delta = ntpg.stats_delta(before, after)
            drops = {k: v for k, v in sorted(delta.items()) if k.startswith("dropped") and v}
            c.info("counter deltas: " + ", ".join("%s %d" % kv for kv in sorted(delta.items())))
            c.check("stats: received counts every datagram", delta.get("received") ==
                    sent + probes, "delta received %s, sent %d" % (delta.get("received"),
                                                                    sent + probes))
            ctl = delta.get("control_requests", 0)
            c.check("stats: replied counts every time reply we saw", delta.get("replied") ==
                    replies - control_replies + probes_answered,
                    "delta replied %s, seen %d (+ %d mode 6 answers)" % (
                        delta.get("replied"), replies - control_replies + probes_answered,
                        control_replies))
            c.check("stats: received = replied + dropped_* + control_requests",
                    delta.get("received", 0) == delta.get("replied", 0) +
                    ntpg.dropped_total(delta) + ctl,
                    "%s = %s + %d + %d" % (delta.get("received"), delta.get("replied"),
                                           ntpg.dropped_total(delta), ctl))
            c.check("stats: every mode 6 request the control path got is counted by outcome",
                    sum(v for k, v in delta.items() if k.startswith("ctl_")) == ctl,
                    "ctl_* %d, control_requests %d" % (
                        sum(v for k, v in delta.items() if k.startswith("ctl_")), ctl))
            c.check("stats: drops counted by reason", drops and
                    ntpg.dropped_total(delta) + ctl == sent + probes - replies +
                    control_replies - probes_answered, drops)

    rc, took = d.stop()
    c.check("SIGTERM exits 0", rc == 0, "rc %s after %.2f s" % (rc, took))
    rep = d.sanitizer_report()
    c.check("no sanitizer report", not rep, rep)


if __name__ == "__main__":
    ntpg.run(main)
