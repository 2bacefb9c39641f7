"""Time quality (issue 14) against a real upstream, on loopback: ntpgated (-x, no drift file)
is the client of `chronyd -x` (`local stratum 8`) through a small UDP relay written here that
delays every datagram by a random 0..JITTER (uniform) in each direction.

Every daemon runs with -x on this one machine, so both read the same system clock: the true
offset of ntpgated's clock is 0, and a single sample's offset error is half the difference of
its two one-way delays, at most JITTER / 2 (plus the relay's own scheduling, SLACK). The
daemon's estimate (`ntpq -c rv` `offset`), which averages many samples, must stay within that
bound, be well inside it on the median, and change as new samples come in: the discipline
used to copy ntpd's 900 s FREQ stage, during which `offset` did not move at all.

Also checked on every reading: the system peer is never lost once selected (`sync_ntp` in
the status word), and `frequency` moves with the samples too."""

import os
import random
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402
import ntprelay  # noqa: E402

NTPQ = os.path.join(ntpg.PEERS, "usr", "bin", "ntpq")
JITTER = 0.002  # s: each one-way delay is uniform in [0, JITTER]
SLACK = 0.0003  # s: what the relay's timing (a Python thread) may still miss on a loaded machine
POLL = "iburst minpoll 1 maxpoll 1"
READINGS = 16
READ_EVERY = 3.0  # s; the poll is 2 s, so every reading follows at least one new sample


def A(k):
    return ntpg.server_addr(k)


def jitter_relay(listen, upstream, jitter, seed=14):
    """A relay holding each datagram for its floor (the same both ways) + uniform 0..jitter s."""
    rng = random.Random(seed)
    return ntprelay.Relay(listen, upstream, lambda out: rng.uniform(0, jitter))


def run_ntpq(addr, cmds, timeout=15):
    argv = [ntpg.PYTHON, NTPQ, "-n"]  # numeric: no reverse lookups through the host resolver
    for c in cmds:
        argv += ["-c", c]
    argv.append(addr)
    return ntpg.run_tool(argv, timeout)


def read_rv(addr):
    """(offset ms, frequency ppm, status text) from `ntpq -c rv`, or None."""
    rc, out, err = run_ntpq(addr, ["rv"])
    vals = dict((m.group(1), m.group(2)) for m in
                re.finditer(r'([A-Za-z_][\w.]*)=("[^"]*"|[^,\s]*)', out))
    try:
        return float(vals["offset"]), float(vals["frequency"]), out.splitlines()[0]
    except (KeyError, ValueError, IndexError):
        return None


def main(c, tmp):
    chrony = ntpg.Daemon(tmp, [A(1)], stratum=8, name="chrony", kind="chronyd")
    if not c.check("chronyd answers on %s" % A(1), chrony.start(),
                   why="rc %s %r" % (chrony.rc, chrony.stderr_text()[-300:])):
        return
    relay = jitter_relay(A(2), A(1), JITTER)
    client = ntpg.Daemon(tmp, [A(3)], stratum=None, name="client",
                         extra=["server %s %s" % (A(2), POLL)])
    if not c.check("ntpgated (-x, no drift file) answers on %s" % A(3), client.start(),
                   why="rc %s %r" % (client.rc, client.stderr_text()[-300:])):
        relay.stop()
        return
    t0 = time.monotonic()
    first = ntpg.wait_until(lambda: (read_rv(A(3)) or (0, 0, ""))[2].find("sync_ntp") >= 0,
                            40.0, 0.5)
    synced_after = time.monotonic() - t0
    if not c.check("synchronized to chronyd through the relay", first,
                   "after %.1f s" % synced_after, why=client.log_diag()):
        relay.stop()
        return
    readings = []
    for _ in range(READINGS):
        time.sleep(READ_EVERY)
        r = read_rv(A(3))
        readings.append(r)
    relay.stop()
    got = [r for r in readings if r]
    c.info("synchronized after %.1f s; relay forwarded %d datagrams" % (synced_after,
                                                                       relay.counts["forwarded"]))
    c.info("offsets (ms): %s" % " ".join("%+.3f" % r[0] for r in got))
    c.info("frequencies (ppm): %s" % " ".join("%+.2f" % r[1] for r in got))
    if not c.check("every `ntpq -c rv` answered", len(got) == READINGS,
                   "%d of %d" % (len(got), READINGS)):
        return
    offsets = [r[0] for r in got]
    changed = sum(1 for a, b in zip(offsets, offsets[1:]) if a != b)
    c.check("offset changes with new samples (no stage that ignores them)",
            changed >= len(offsets) - 2, "%d changes in %d readings" % (changed, len(offsets)))
    freqs = [r[1] for r in got]
    fchanged = sum(1 for a, b in zip(freqs, freqs[1:]) if a != b)
    c.check("frequency changes with new samples", fchanged >= len(freqs) - 2,
            "%d changes in %d readings" % (fchanged, len(freqs)))
    bound_ms = (JITTER / 2 + SLACK) * 1e3
    worst = max(abs(o) for o in offsets)
    c.check("|offset| <= jitter/2 + slack = %.2f ms on every reading" % bound_ms,
            worst <= bound_ms, "worst %.3f ms" % worst)
    med = statistics.median(abs(o) for o in offsets)
    c.check("median |offset| <= jitter/4 = %.2f ms (the estimate averages)" % (JITTER / 4e-3),
            med <= JITTER / 4 * 1e3, "median %.3f ms" % med)
    lost = [r[2] for r in got if "sync_ntp" not in r[2]]
    c.check("the system peer is never lost once selected", not lost,
            "status lines without sync_ntp: %s" % lost[:3])
    rc, took = client.stop()
    c.check("ntpgated exits 0 on SIGTERM", rc == 0, "rc %s after %.2f s" % (rc, took))
    chrony.stop()


if __name__ == "__main__":
    ntpg.run(main)
