"""Time quality side by side (issue 14): ntpgated and chronyd, both with -x, as clients of the
same upstream (chronyd -x, `local stratum 8`) through the same UDP relay, in one run per
scenario. Run it through bench/timequality.sh (which puts it in a private network namespace).

Everything runs on this one machine with -x, so every daemon reads the same system clock: the
true offset of each client's clock is 0. Each daemon's own estimate of that offset is read
every INTERVAL s after the warm-up:
  - ntpgated: `ntpq -c rv` `offset` (its estimate of the system clock's error);
  - chronyd: under -x chronyd keeps a virtual clock (the system clock plus every correction
    it would have made) and serves it; a direct query on loopback (no relay) reads
    served - system = its estimate of the same error. `chronyc tracking` `System time` says
    the same thing, and is logged beside it as a cross-check.
The error of an estimate is the estimate itself. The table shows chronyd both ways: "chronyd"
is served - system (read through a query of our own, so it carries that query's timing
noise), "chronyd (tracking)" is chronyc's System time, chronyd's own estimate as `ntpq rv
offset` is ours. With a constant path asymmetry a (outbound
minus return delay) no client can tell it from an offset: both must show a/2.

Scenarios (each one-way delay independently, in each direction, on top of the relay's floor
of 0.25 ms each way, tests/integration/ntprelay.py):
  sym   uniform 0..2 ms
  exp   exponential, mean 0.5 ms (capped at 20 ms), and 2 % of the datagrams lost
  asym  constant 1.5 ms out, 0.5 ms back, plus uniform 0..0.2 ms: a/2 = +0.5 ms
  zero  (not in the default list) the floor alone: a check of the relay itself, where both
        clients must read about 0
"""

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import ntpg  # noqa: E402
import ntprelay  # noqa: E402

NTPQ = os.path.join(ntpg.PEERS, "usr", "bin", "ntpq")
CHRONYC = os.path.join(ntpg.PEERS, "usr", "bin", "chronyc")
UPSTREAM, RELAY, NTPG, CHRONY = "127.0.50.1", "127.0.50.2", "127.0.50.3", "127.0.50.4"


def delay_fn(name, rng):
    if name == "zero":
        return lambda out: 0.0
    if name == "sym":
        return lambda out: rng.uniform(0, 0.002)
    if name == "exp":
        return lambda out: None if rng.random() < 0.02 else min(rng.expovariate(2000), 0.02)
    if name == "asym":
        return lambda out: (0.0015 if out else 0.0005) + rng.uniform(0, 0.0002)
    raise ValueError(name)


def ntpgated_offset():
    rc, out, _ = ntpg.run_tool([ntpg.PYTHON, NTPQ, "-c", "rv", NTPG], 15)
    m = re.search(r"\boffset=(-?[\d.]+(?:[eE][-+]?\d+)?)", out)  # ntpq: 8.4e-05 for 84 ns
    return float(m.group(1)) * 1e-3 if m and "sync_ntp" in out else None


def chronyd_offset():
    """served - system of the chronyd client, the median of 3 direct loopback queries."""
    vals = []
    for _ in range(3):
        r = ntpg.query(CHRONY, 123, timeout=0.5)
        if r:
            vals.append(r["offset"])
    return statistics.median(vals) if vals else None


def chronyc_system_time(sock):
    rc, out, _ = ntpg.run_tool([CHRONYC, "-h", sock, "tracking"], 10)
    m = re.search(r"System time\s*:\s*([\d.]+) seconds (fast|slow)", out)
    if not m:
        return None
    v = float(m.group(1))
    return v if m.group(2) == "slow" else -v  # slow = behind = positive offset


def stats(errs):
    a = sorted(abs(e) for e in errs)
    if not a:
        return None
    p95 = a[min(len(a) - 1, int(round(0.95 * (len(a) - 1))))]
    return {"n": len(a), "median": statistics.median(a), "p95": p95,
            "mean": statistics.fmean(a), "bias": statistics.fmean(errs)}


def run_scenario(name, args, tmp, log):
    poll = "iburst minpoll %d maxpoll %d" % (args.poll, args.poll)
    up = ntpg.Daemon(tmp, [UPSTREAM], stratum=8, name=name + "-up", kind="chronyd")
    relay = None
    raw = os.path.join(args.out, "raw-" + name) if args.raw else None
    if raw:
        os.makedirs(raw, exist_ok=True)
    cl = ntpg.Daemon(tmp, [NTPG], stratum=None, name=name + "-ntpgated",
                     extra=["server %s %s" % (RELAY, poll)] +
                     (["statsdir %s/" % raw, "statistics peerstats",
                       "filegen peerstats file ntpgated-peerstats type none enable"]
                      if raw else []))
    csock = os.path.join(tmp, name + "-chronyd.sock")
    ch = ntpg.Daemon(tmp, [CHRONY], name=name + "-chronyd", kind="chronyd")
    ch.write_config(text="\n".join([
        "server %s %s" % (RELAY, poll), "allow 127.0.0.0/8", "bindaddress %s" % CHRONY,
        "port 123", "cmdport 0", "bindcmdaddress %s" % csock, "pidfile %s" % ch.pidfile,
        "makestep 0.128 3"] + (["logdir %s" % raw, "log measurements"] if raw else [])) + "\n")
    try:
        if not up.start():
            raise RuntimeError("upstream chronyd did not start: %s" % up.stderr_text()[-300:])
        relay = ntprelay.Relay(RELAY, UPSTREAM, delay_fn(name, random.Random(args.seed)))
        for d in (cl, ch):
            if not d.start():
                raise RuntimeError("%s did not start: %s" % (d.name, d.stderr_text()[-300:]))
        t0 = time.monotonic()
        rows = []
        for _ in range(int((args.warmup + args.duration) / args.interval) + 2):
            t = time.monotonic() - t0
            if t >= args.warmup + args.duration:
                break
            if t >= args.warmup:
                row = (round(t, 1), ntpgated_offset(), chronyd_offset(), chronyc_system_time(csock))
                rows.append(row)
                log.write("%s %.1f %s\n" % (name, row[0], " ".join(
                    "-" if v is None else "%+.6f" % v for v in row[1:])))
                log.flush()
            time.sleep(max(0.0, args.interval - (time.monotonic() - t0 - t)))
        return rows, dict(relay.counts)
    finally:
        if relay:
            relay.stop()
        for d in (cl, ch, up):
            d.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="sym,exp,asym")
    ap.add_argument("--warmup", type=float, default=1000.0, help="s before measuring")
    ap.add_argument("--duration", type=float, default=1800.0, help="s of measurements")
    ap.add_argument("--interval", type=float, default=5.0, help="s between readings")
    ap.add_argument("--poll", type=int, default=4, help="minpoll = maxpoll of both clients")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--raw", action="store_true",
                    help="keep each client's raw samples (ntpgated peerstats, chronyd "
                    "measurements.log) in OUT/raw-SCENARIO, to tell the measurement from "
                    "the estimator")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))  # daemons are stopped on the way out
    os.makedirs(args.out, exist_ok=True)
    tmp = ntpg.tempfile.mkdtemp(prefix="ntpg-timequality-")
    logpath = os.path.join(args.out, "timequality-%d.log" % int(time.time()))
    results = []
    with open(logpath, "w") as log:
        log.write("# scenario t ntpgated_offset chronyd_served-system chronyc_system_time (s)\n")
        for name in args.scenarios.split(","):
            rows, counts = run_scenario(name, args, tmp, log)
            g = stats([r[1] for r in rows if r[1] is not None])
            c = stats([r[2] for r in rows if r[2] is not None])
            ct = stats([r[3] for r in rows if r[3] is not None])
            lost = sum(1 for r in rows if r[1] is None)
            results.append((name, g, c, ct, lost, counts))
    print("run: warm-up %.0f s, %.0f s of readings every %.0f s per scenario, poll 2^%d s, "
          "seed %d; readings in %s" % (args.warmup, args.duration, args.interval, args.poll,
                                       args.seed, logpath))
    print()
    print("| scenario | daemon | readings | median \\|err\\| (µs) | p95 (µs) | mean \\|err\\| (µs) "
          "| mean err (µs) |")
    print("|---|---|---|---|---|---|---|")
    for name, g, c, ct, lost, counts in results:
        for dname, s in (("ntpgated", g), ("chronyd", c), ("chronyd (tracking)", ct)):
            if s is None:
                print("| %s | %s | 0 | | | | |" % (name, dname))
                continue
            print("| %s | %s | %d | %.0f | %.0f | %.0f | %+.0f |" % (
                name, dname, s["n"], s["median"] * 1e6, s["p95"] * 1e6, s["mean"] * 1e6,
                s["bias"] * 1e6))
    print()
    for name, g, c, ct, lost, counts in results:
        print("%s: relay held %d datagrams, dropped %d; readings without a system peer "
              "(ntpgated): %d" % (name, counts["held"], counts["dropped"], lost))


if __name__ == "__main__":
    main()
