"""`tinker` and `tos` with the real daemon (-x, synchronized to its local clock, and a client
association to an address nobody answers, so that the client and its discipline exist):

- `-t` reports every bad `tinker` line as FILE:LINE with the range or the reason for a refusal
  (`allan`), exits non-zero, and shows the warning for a `tos` option of ntpd's that means
  nothing here (`cohort`);
- `tinker dispersion 500` makes the root dispersion we serve grow at 500 ppm, seen in raw
  replies and by the stock ntpq (`rv rootdisp`), where the default grows at 15 ppm;
- a SIGHUP that changes `tinker` logs that the client's selection and discipline keep their
  values until a restart, while the growth of what the local clock serves follows at once;
- a SIGHUP with a bad `tinker` line is refused with FILE:LINE and the old values stay.

What each option does to the discipline is checked on the simulated clock
(tests/unit/test_sim.c, test_discipline.c): a 0.5 s offset slewed with `step 0`, 2000 s
accepted with `panic 0`, `stepout`, `stepback`/`stepfwd`, `huffpuff`, `tos minsane`/`maxdist`."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402
import test_control as tc  # noqa: E402


def growth(d, addr, span=2.0):
    """Root dispersion growth (s/s) of raw replies span seconds apart; a pair that straddles
    the local clock's refresh (every 64 s: the dispersion starts again) is taken again."""
    for _ in range(3):
        a = ntpg.query(addr, 123, timeout=1.0)
        t0 = time.monotonic()
        time.sleep(span)
        b = ntpg.query(addr, 123, timeout=1.0)
        t1 = time.monotonic()
        if a is None or b is None:
            return None
        ra, rb = a["reply"]["rootdisp"], b["reply"]["rootdisp"]
        if rb >= ra:
            return (rb - ra) / (t1 - t0)
    return None


def ntpq_rootdisp(addr):
    """rootdisp from the stock ntpq, in s (ntpq shows ms)."""
    rc, out, err, _ = tc.run_ntpq(addr, ["rv 0 rootdisp"])
    m = re.search(r"rootdisp=([0-9.]+)", out)
    return float(m.group(1)) / 1000.0 if m else None


def main(c, tmp):
    addr = ntpg.server_addr(1)
    silent = ntpg.server_addr(2)  # nobody listens here: the client exists, never syncs

    c.section("-t: FILE:LINE for every bad tinker line")
    bad = os.path.join(tmp, "bad.conf")
    ntpg.write_text(bad, "server 127.127.1.0\n"
                         "tinker step 5000\n"
                         "tinker allan 1500 panic 0\n"
                         "tos cohort 0\n"
                         "tinker panic 10 step 20\n"
                         "tinker dispersion 0\n"
                         "tinker huffpuff 7200 stepout 60 stepback 0\n")
    rc, out, err = ntpg.run_tool([ntpg.DAEMON, "-t", "-c", bad], 10)
    text = out + err
    c.check("-t exits non-zero on bad tinker lines", rc not in (0, None), "rc %s" % rc)
    for want in ["%s:2: tinker: step 5000 is out of range 0..3600" % bad,
                 "%s:3: tinker: option 'allan' is not supported: the loop has no PLL/FLL" % bad,
                 "%s:5: tinker: a step threshold (20 s) above the panic threshold 10 s" % bad,
                 "%s:6: tinker: dispersion 0 is out of range 0.01..1000" % bad,
                 "%s:4: warning: tos: option 'cohort' has no effect here" % bad]:
        c.check("-t says %r" % want[len(bad):], want in text, text[-600:])
    c.check("-t has nothing to say about the good tinker line 7", ":7:" not in text, text[-600:])

    c.section("tinker dispersion 500: what we serve grows at 500 ppm")
    d = ntpg.Daemon(tmp, [addr], stratum=5, name="tk",
                    extra=["server %s iburst" % silent, "tinker dispersion 500",
                           "restrict 127.0.0.0 mask 255.0.0.0"])
    c.check("starts with tinker dispersion 500", d.start(), d.log_diag())
    g = growth(d, addr)
    c.check("raw replies: root dispersion grows at 500 ppm (+-15 %)",
            g is not None and abs(g - 500e-6) < 75e-6, "growth %s" % g)
    r1 = ntpq_rootdisp(addr)
    time.sleep(1.0)
    r2 = ntpq_rootdisp(addr)
    c.check("ntpq rv rootdisp grows by about 0.5 ms in a second",
            r1 is not None and r2 is not None and 0.3e-3 < r2 - r1 < 0.8e-3,
            "%s -> %s" % (r1, r2))

    c.section("SIGHUP: a changed tinker line")
    before = len(d.log_text())
    d.write_config(extra=["server %s iburst" % silent, "tinker dispersion 100",
                          "restrict 127.0.0.0 mask 255.0.0.0"])
    d.send_signal(signal.SIGHUP)
    ok = ntpg.wait_until(lambda: "keep the values they started with until a restart"
                         in d.log_text()[before:], 10)
    c.check("the log says the discipline keeps its tinker values until a restart", ok,
            d.log_text()[before:][-600:])
    g = growth(d, addr)
    c.check("the local clock's root dispersion now grows at 100 ppm (+-20 %)",
            g is not None and abs(g - 100e-6) < 20e-6, "growth %s" % g)

    c.section("SIGHUP: a bad tinker line changes nothing")
    before = len(d.log_text())
    d.write_config(extra=["server %s iburst" % silent, "tinker dispersion 700",
                          "tinker stepfwd 4000", "restrict 127.0.0.0 mask 255.0.0.0"])
    d.send_signal(signal.SIGHUP)
    ok = ntpg.wait_until(lambda: "previous configuration stays in force"
                         in d.log_text()[before:], 10)
    log = d.log_text()[before:]
    c.check("the reload is refused", ok, log[-600:])
    c.check("with FILE:LINE and the range",
            re.search(re.escape(d.conf) + r":\d+: tinker: stepfwd 4000 is out of range 0..3600",
                      log) is not None, log[-600:])
    g = growth(d, addr)
    c.check("the old value stays: 100 ppm (+-20 %)",
            g is not None and abs(g - 100e-6) < 20e-6, "growth %s" % g)
    rc, took = d.stop()
    c.check("exits cleanly", rc == 0, "rc %s" % rc)


if __name__ == "__main__":
    ntpg.run(main, "tinker and tos")
