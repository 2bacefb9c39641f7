"""Soak under attack, short version (bench/soak.py -d 300 is the long one): legitimate clients
from 1,000 addresses, a spoofed flood from 1,000,000 addresses at 20,000/s, malformed packets,
mode 6/7 probes and a SIGHUP every 3 s, for 15 s. The daemon stays up, legitimate clients are
answered, no reply is longer than its request, the counters add up, and memory stays within
the monitor table's bound plus a fixed overhead."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

sys.path.insert(0, os.path.join(ntpg.SRC, "bench"))
import soak  # noqa: E402

MRU = 65536
OVERHEAD_KIB = 32 * 1024  # threads' stacks and batches, arenas, the control table


def main(c, tmp):
    build = os.path.dirname(ntpg.DAEMON)
    if not c.check("ntpload built next to the daemon", os.access(os.path.join(build, "ntpload"),
                                                                   os.X_OK), build):
        return
    r = soak.soak(build, duration=15, server=ntpg.server_addr(1), mru_entries=MRU, tmp=tmp,
                  log=c.info)
    for k in ("legit_sent", "legit_answered", "legit_kod", "noise_sent", "reloads",
              "rss_start_kib", "rss_peak_kib", "mon_memory_bytes", "mon_entries",
              "mon_evictions", "received", "replied", "dropped", "flood"):
        c.info("%s: %s" % (k, r.get(k)))
    c.check("daemon alive after the soak", r["alive"])
    c.check("reloaded under load (SIGHUP every 3 s)", r["reloads"] >= 3, r["reloads"])
    c.check("legitimate clients answered (>= 90%)", r["legit_fraction"] >= 0.9,
            "%.3f (%d of %d)" % (r["legit_fraction"], r["legit_answered"], r["legit_sent"]))
    c.check("no reply longer than its request", not r["longer_than_request"] and
            r["blocked_larger"] == 0, r["longer_than_request"][:5])
    c.check("counters add up: received = replied + send errors + drops + control",
            r["counters_consistent"], "received %s replied %s dropped %s" % (
                r["received"], r["replied"], r["dropped"]))
    c.check("monitor table full but within its bound", r["mon_entries"] is not None and
            r["mon_entries"] <= MRU, r["mon_entries"])
    if ntpg.SANITIZE:
        c.skip("peak RSS within the monitor bound + %d MiB" % (OVERHEAD_KIB // 1024),
               "the sanitizer runtime's memory is not the daemon's")
    else:
        bound = (r["rss_start_kib"] or 0) + (r["mon_memory_bytes"] or 0) // 1024 + OVERHEAD_KIB
        c.check("peak RSS within the monitor bound + %d MiB" % (OVERHEAD_KIB // 1024),
                r["rss_peak_kib"] <= bound, "peak %s KiB, bound %d KiB" % (r["rss_peak_kib"],
                                                                           bound))


if __name__ == "__main__":
    ntpg.run(main, "soak under attack (short)")
